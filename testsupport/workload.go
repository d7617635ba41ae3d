package testsupport

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// WorkloadTable is a table a Workload writes to. Besides its single-column
// key it must have the columns v text and n bigint, and big text if Big is
// set.
type WorkloadTable struct {
	// Name is the quoted, schema-qualified table name, e.g. public.crash_int.
	Name string
	// Key is the quoted key column.
	Key string
	// Keys is the pool the workload draws key values from (int64 or string
	// values). A small pool makes updates and deletes hit existing rows.
	Keys []any
	// Big makes some writes store a value in column big that is large and
	// incompressible enough to be TOASTed out of line, so that updates
	// leaving it alone replicate it as "unchanged".
	Big bool
}

// WorkloadOptions tune a Workload.
type WorkloadOptions struct {
	// Writers is the number of concurrent writing connections (default 2).
	Writers int
	// Seed makes the sequence of operations each writer draws repeatable
	// (their interleaving is not).
	Seed uint64
	// Pause is how long each writer waits between transactions (default
	// 2ms), which bounds the change rate.
	Pause time.Duration
	// Large, if set, makes one transaction in Large a large one: it
	// rewrites every row of a table with a value of about 1 kB, after
	// doing so once more in a savepoint it rolls back; with a low
	// logical_decoding_work_mem (64kB) the server streams it while in
	// progress.
	Large int
}

// WorkloadStats counts a workload's transactions.
type WorkloadStats struct {
	Committed  int64
	RolledBack int64 // deliberately, to leave aborted changes in the WAL
	Conflicts  int64 // aborted by a unique violation or deadlock between writers
}

// Workload runs random insert, update, key-changing update and delete
// transactions against tables until stopped.
type Workload struct {
	tables []WorkloadTable
	large  int
	cancel context.CancelFunc
	wg     sync.WaitGroup

	committed, rolledBack, conflicts atomic.Int64

	// Each transaction holds gate for reading; Pause holds it for writing.
	gate sync.RWMutex

	mu     sync.Mutex
	paused bool
	err    error // the first unexpected error; it stops its writer
}

// StartWorkload starts writing to tables of database. Stop it before the
// test inspects the tables; it is stopped at cleanup in any case.
func StartWorkload(t testing.TB, pg *Postgres, database string, tables []WorkloadTable, opts WorkloadOptions) *Workload {
	t.Helper()
	if opts.Writers <= 0 {
		opts.Writers = 2
	}
	if opts.Pause <= 0 {
		opts.Pause = 2 * time.Millisecond
	}
	for _, tbl := range tables {
		if len(tbl.Keys) == 0 {
			t.Fatalf("StartWorkload: table %s has an empty key pool", tbl.Name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Workload{tables: tables, large: opts.Large, cancel: cancel}
	for i := range opts.Writers {
		conn := pg.Connect(t, database)
		rng := rand.New(rand.NewPCG(opts.Seed, uint64(i)))
		w.wg.Go(func() { w.write(ctx, conn, rng, opts.Pause) })
	}
	t.Cleanup(w.halt)
	return w
}

// Stop stops the writers, waits for their transactions to end, and returns
// the counts. An unexpected database error fails the test.
func (w *Workload) Stop(t testing.TB) WorkloadStats {
	t.Helper()
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("workload: %v", w.err)
	}
	return w.Stats()
}

// Stats returns the counts so far.
func (w *Workload) Stats() WorkloadStats {
	return WorkloadStats{Committed: w.committed.Load(), RolledBack: w.rolledBack.Load(), Conflicts: w.conflicts.Load()}
}

// Pause waits for the transactions in flight to end and holds the writers
// until Resume, so that the tables stand still.
func (w *Workload) Pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.paused {
		w.gate.Lock()
		w.paused = true
	}
}

// Resume lets the writers go on after Pause.
func (w *Workload) Resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.paused {
		w.gate.Unlock()
		w.paused = false
	}
}

func (w *Workload) halt() {
	w.cancel()
	w.Resume()
	w.wg.Wait()
}

func (w *Workload) write(ctx context.Context, conn *pgx.Conn, rng *rand.Rand, pause time.Duration) {
	timer := time.NewTimer(pause)
	defer timer.Stop()
	for {
		w.gate.RLock()
		err := w.transaction(ctx, conn, rng)
		w.gate.RUnlock()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
			return
		}
		timer.Reset(pause)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// transaction runs one transaction of one to four random statements. A
// conflict with another writer rolls it back and is counted, not an error.
func (w *Workload) transaction(ctx context.Context, conn *pgx.Conn, rng *rand.Rand) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("BEGIN: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	statements := func() [][]any {
		var out [][]any
		for range 1 + rng.IntN(4) {
			tbl := &w.tables[rng.IntN(len(w.tables))]
			sql, args := tbl.statement(rng)
			out = append(out, append([]any{sql}, args...))
		}
		return out
	}
	if w.large > 0 && rng.IntN(w.large) == 0 {
		statements = func() [][]any { return w.tables[rng.IntN(len(w.tables))].large(rng) }
	}
	for _, st := range statements() {
		sql, args := st[0].(string), st[1:]
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			if isConflict(err) {
				w.conflicts.Add(1)
				return nil
			}
			return fmt.Errorf("%s %v: %w", sql, args, err)
		}
	}
	if rng.IntN(20) == 0 {
		w.rolledBack.Add(1)
		return nil // the deferred rollback
	}
	if err := tx.Commit(ctx); err != nil {
		if isConflict(err) {
			w.conflicts.Add(1)
			return nil
		}
		return fmt.Errorf("COMMIT: %w", err)
	}
	w.committed.Add(1)
	return nil
}

// isConflict reports whether err is one of the errors concurrent writers
// cause each other.
func isConflict(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "23505", "40P01", "40001": // unique_violation, deadlock_detected, serialization_failure
		return true
	}
	return false
}

// statement draws one random write to the table.
func (tbl *WorkloadTable) statement(rng *rand.Rand) (string, []any) {
	key := tbl.Keys[rng.IntN(len(tbl.Keys))]
	switch r := rng.IntN(100); {
	case r < 30:
		if tbl.Big {
			return fmt.Sprintf(`INSERT INTO %s AS t (%s, v, n, big) VALUES ($1, $2, 0, $3)
				ON CONFLICT (%[2]s) DO UPDATE SET v = EXCLUDED.v, n = t.n + 1, big = EXCLUDED.big`, tbl.Name, tbl.Key),
				[]any{key, randomText(rng), bigValue(rng)}
		}
		return fmt.Sprintf(`INSERT INTO %s AS t (%s, v, n) VALUES ($1, $2, 0)
			ON CONFLICT (%[2]s) DO UPDATE SET v = EXCLUDED.v, n = t.n + 1`, tbl.Name, tbl.Key),
			[]any{key, randomText(rng)}
	case r < 52:
		return fmt.Sprintf(`UPDATE %s SET v = $2, n = n + 1 WHERE %s = $1`, tbl.Name, tbl.Key), []any{key, randomText(rng)}
	case r < 62:
		// Leaves v and big alone: a TOASTed big replicates as unchanged.
		return fmt.Sprintf(`UPDATE %s SET n = n + 1 WHERE %s = $1`, tbl.Name, tbl.Key), []any{key}
	case r < 77:
		to := tbl.Keys[rng.IntN(len(tbl.Keys))]
		return fmt.Sprintf(`UPDATE %s SET %s = $2, n = n + 1 WHERE %[2]s = $1 AND NOT EXISTS (SELECT FROM %[1]s WHERE %[2]s = $2)`, tbl.Name, tbl.Key),
			[]any{key, to}
	case r < 92:
		return fmt.Sprintf(`DELETE FROM %s WHERE %s = $1`, tbl.Name, tbl.Key), []any{key}
	default:
		// Several rows in one statement, in no particular key order.
		keys := []any{key, tbl.Keys[rng.IntN(len(tbl.Keys))], tbl.Keys[rng.IntN(len(tbl.Keys))]}
		return fmt.Sprintf(`UPDATE %s SET n = n + 1, v = v || '+' WHERE %s IN ($1, $2, $3)`, tbl.Name, tbl.Key), keys
	}
}

// large draws the statements of a large transaction (see
// WorkloadOptions.Large).
func (tbl *WorkloadTable) large(rng *rand.Rand) [][]any {
	pad := fmt.Sprintf("%s-%d-", randomText(rng), rng.IntN(1000))
	rewrite := fmt.Sprintf(`UPDATE %s SET v = rpad($1, 1000, $1), n = n + 1`, tbl.Name)
	return [][]any{
		{"SAVEPOINT large"},
		{rewrite, "rolled back " + pad},
		{"ROLLBACK TO SAVEPOINT large"},
		{rewrite, pad},
	}
}

// randomText returns a value with characters that are awkward in JSON and
// in SQL literals.
func randomText(rng *rand.Rand) string {
	pieces := [...]string{"plain", `quo"te`, `back\slash`, "it's", "é", "日本", "🙂", "tab\t", "line\nbreak", "<&>", " "}
	return fmt.Sprintf("%s-%d", pieces[rng.IntN(len(pieces))], rng.IntN(1000))
}

// bigValue returns NULL, a short value, or a value that PostgreSQL stores
// out of line: random bytes in base64 do not compress below the TOAST
// threshold (about 2 kB).
func bigValue(rng *rand.Rand) any {
	switch rng.IntN(3) {
	case 0:
		return nil
	case 1:
		return "small"
	}
	raw := make([]byte, 6000)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// CollationTrapKeys returns text keys whose orders differ between byte
// order and the usual collations: case, accents (precomposed and
// combining), punctuation that linguistic collations ignore, trailing
// spaces, the empty string, digits and multi-byte characters. Each trap
// also appears with suffixes, so that prefixes of other keys are keys too.
func CollationTrapKeys() []string {
	traps := []string{
		"", "a", "A", "B", "b", "_x", "x_", "Z ", "Z", "z", " ", "  ", "é", "e", "E", "É", "e\u0301",
		"-", "--", "1", "10", "9", "-1", "a b", "ab", "a-b", "ß", "ss", "Å", "å", "~", "日本", "🙂",
	}
	seen := make(map[string]bool)
	var keys []string
	for _, trap := range traps {
		for _, suffix := range []string{"", "0", "a", "Á", " "} {
			if k := trap + suffix; !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// IntKeys returns the keys 0 to n-1 as a key pool.
func IntKeys(n int) []any {
	keys := make([]any, n)
	for i := range keys {
		keys[i] = int64(i)
	}
	return keys
}

// StringKeys converts strings into a key pool.
func StringKeys(s []string) []any {
	keys := make([]any, len(s))
	for i, k := range s {
		keys[i] = k
	}
	return keys
}
