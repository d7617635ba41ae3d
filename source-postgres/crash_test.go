package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/source-postgres/pgversion"
	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// TestCrashRecovery is the "crash anywhere, lose nothing" check. Random
// transactions (inserts, updates, key-changing updates, deletes, rollbacks)
// write to a table with an integer key, one with a text key full of
// collation traps and TOASTed values under REPLICA IDENTITY FULL, one whose
// text key has an ICU collation, and one that joins the capture later,
// while the connector is killed with SIGKILL at random moments: during
// start-up, mid-chunk, and while streaming. The runtime's part is played
// faithfully: checkpoints are acknowledged late and in random batches, and
// each restart gets the state of the last acknowledged checkpoint, the
// documents after it discarded.
//
// The committed documents, reduced by key, must equal the tables: at the
// end, and also at checks along the way, where the workload pauses until an
// acknowledged checkpoint covers everything written; there, every table
// that is backfilled must match, and a table being backfilled must match
// for the keys its backfill has reached. (A change lost during a backfill
// would often be repaired by a later change of the same row before the
// end: the checks along the way catch it before that.)
//
// One transaction in 15 rewrites a whole table (after rewriting it once in
// a savepoint it rolls back), and logical_decoding_work_mem is 64kB: from
// 14 on, the server streams those while in progress, so kills land inside
// streamed transactions too.
//
// PGCAPTURE_CRASH_DURATION (e.g. 60s) lengthens the crash phase from its
// default of 15s; PGCAPTURE_CRASH_SEED replays a run's random choices.
func TestCrashRecovery(t *testing.T) {
	duration := 15 * time.Second
	if v := os.Getenv("PGCAPTURE_CRASH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PGCAPTURE_CRASH_DURATION=%q: %v (use a Go duration such as 60s)", v, err)
		}
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PGCAPTURE_CRASH_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("PGCAPTURE_CRASH_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("crash phase %v, PGCAPTURE_CRASH_SEED=%d", duration, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	f := newFixture(t)
	f.advanced["backfill_chunk_size"] = 7
	// From 14 on, the server streams the workload's larger transactions
	// while they are in progress, so kills land inside streamed ones too.
	f.streamSmallTransactions(t)
	// Three connections, so that kills land in rounds of chunks read at
	// once, of several tables and of key ranges of one (the tables are
	// analyzed, so their estimates make them worth splitting).
	f.advanced["backfill_connections"] = 3
	tables := crashTables(t, f)
	f.exec(t, `CREATE TABLE public.crash_sentinel (id int PRIMARY KEY, n bigint)`)

	var workload []testsupport.WorkloadTable
	for _, tbl := range tables {
		workload = append(workload, testsupport.WorkloadTable{Name: "public." + tbl.name, Key: tbl.key, Keys: tbl.pool, Big: tbl.big})
	}
	w := testsupport.StartWorkload(t, f.pg, f.db, workload, testsupport.WorkloadOptions{Seed: seed, Pause: 10 * time.Millisecond, Large: 15})

	// The last table joins the capture once the others stream (and the
	// connector was killed while they did), so that it is backfilled, and
	// killed during its backfill, under a live stream.
	c := &crashRun{t: t, f: f, tables: tables, bound: len(tables) - 1, committed: make(map[int][]json.RawMessage)}
	lateAt := time.Now().Add(duration * 3 / 4)
	deadline := time.Now().Add(duration)
	for round := 1; time.Now().Before(deadline); round++ {
		if c.bound < len(tables) && (c.kills-c.killsInBackfill >= 3 || time.Now().After(lateAt)) {
			c.bound++
			c.phaseKills = 0
		}
		s := f.connector.Open(t, testsupport.OpenRequest(f.config(), c.bindings(), c.state), testsupport.SessionOptions{})
		a := startAcker(s, rand.New(rand.NewPCG(seed, uint64(round))), 0)
		backfill := c.state == nil || backfilling(t, c.state, c.bindings())
		// Checks, and sessions left to run a while, may let a backfill run
		// to its end: each backfill is first killed twice in mid-chunk.
		early := backfill && c.phaseKills < 2
		pace := func() {
			if backfill && early && c.killedSplit == 0 {
				// Until one kill has landed in a split backfill, wait for
				// the checkpoint that records the ranges (a round over an
				// analyzed table splits it) and kill right then: these
				// backfills last a few rounds, so waiting for more
				// checkpoints could let the split one end first.
				waitSession(s, 10*time.Second, func() bool { return splitState(s.State()) })
				if splitState(s.State()) {
					return
				}
			}
			switch {
			case backfill && (early || rng.IntN(8) != 0):
				waitMidChunk(s, rng)
			case backfill:
				waitSession(s, time.Duration(rng.Int64N(int64(150*time.Millisecond))), nil)
			default:
				waitSession(s, time.Duration(rng.Int64N(int64(1500*time.Millisecond))), nil)
			}
		}
		pace()
		checkOdds := 2 // in 4
		if backfill {
			checkOdds = 1
		}
		if !early && rng.IntN(4) < checkOdds {
			n := c.checkAfterQuiet(s, a, w, round)
			a = startAcker(s, rand.New(rand.NewPCG(seed, uint64(round)<<32)), n)
			pace()
		}
		n := a.halt()
		if exited, err := s.Exited(); exited {
			t.Fatalf("round %d: the connector exited by itself (%v) instead of running until killed; last stderr lines:\n%s",
				round, err, tailLines(s.Stderr(), 15))
		}
		s.Kill()
		c.kills++
		if backfilling(t, s.State(), c.bindings()) {
			c.killsInBackfill++
			c.phaseKills++
			if splitState(s.State()) {
				c.killedSplit++
			}
		}
		c.commit(s, n)
	}
	stats := w.Stop(t)
	c.bound = len(tables)

	// A last session runs until every table is backfilled and the stream has
	// passed a sentinel committed after the workload stopped.
	target := f.walLSN(t, "pg_current_wal_insert_lsn()")
	f.exec(t, `INSERT INTO public.crash_sentinel VALUES (0, 0) ON CONFLICT (id) DO UPDATE SET n = crash_sentinel.n + 1`)
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), c.bindings(), c.state), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 120*time.Second, "the final session to backfill everything and pass the sentinel", func(s *testsupport.Session) bool {
		st := s.State()
		return !backfilling(t, st, c.bindings()) && cursorOf(t, st) > target
	})
	s.Kill()
	c.commit(s, len(s.Checkpoints()))

	t.Logf("%d kills landed in a backfill split into ranges; %d sessions committed such a state", c.killedSplit, c.splitStates)
	t.Logf("%d kills (%d during a backfill), %d consistency checks on the way, %d acknowledged checkpoints, %d unacknowledged ones discarded; workload: %d transactions committed, %d rolled back, %d conflicts",
		c.kills, c.killsInBackfill, c.checks, c.acked, c.discarded, stats.Committed, stats.RolledBack, stats.Conflicts)
	if f.server(t).Has(pgversion.StreamingInProgress) {
		n := f.streamedTxns(t)
		t.Logf("the server streamed %d transactions while in progress", n)
		if n == 0 {
			t.Error("the server streamed no transaction while in progress: the kills never landed inside one")
		}
	}
	if c.killedSplit == 0 {
		t.Error("no kill landed in a backfill split into ranges")
	}
	if c.kills < 5 || c.killsInBackfill == 0 || c.killsInBackfill == c.kills {
		t.Errorf("the crash phase should kill the connector several times both during backfills and while streaming; it killed it %d times, %d of them during a backfill", c.kills, c.killsInBackfill)
	}
	for i, tbl := range tables {
		d := diffAgainstTable(t, f, c.committed[i], []string{"/" + tbl.key}, tbl.query)
		t.Logf("%s: %d documents; %s", tbl.name, len(c.committed[i]), d)
		if !d.ok() {
			t.Errorf("%s at the end: the reduced documents differ from the table: %s", tbl.name, d)
		}
	}
}

// crashRun is the runtime's side of TestCrashRecovery: what it committed.
type crashRun struct {
	t      *testing.T
	f      *fixture
	tables []crashTable
	bound  int // the first bound tables are bound

	state     json.RawMessage
	committed map[int][]json.RawMessage // documents of acknowledged checkpoints, by binding

	kills, killsInBackfill, checks, acked, discarded int
	// splitStates counts committed states with a backfill split into
	// ranges, killedSplit kills while the session's state had one.
	splitStates, killedSplit int
	phaseKills               int // kills during the current backfill phase
}

func (c *crashRun) bindings() []testsupport.Binding {
	var out []testsupport.Binding
	for _, tbl := range c.tables[:c.bound] {
		out = append(out, testsupport.Binding{Namespace: "public", Stream: tbl.name, Key: []string{"/" + tbl.key}})
	}
	return out
}

// commit takes the first n checkpoints of an ended session as committed.
func (c *crashRun) commit(s *testsupport.Session, n int) {
	for b, docs := range committedDocs(s, n) {
		c.committed[b] = append(c.committed[b], docs...)
	}
	c.acked += n
	c.discarded += len(s.Checkpoints()) - n
	if splitState(s.AckedState()) {
		c.splitStates++
	}
	c.state = s.AckedState()
}

// splitState is whether a capture state holds a backfill split into ranges
// (a finished one's are null).
func splitState(state json.RawMessage) bool {
	return strings.Contains(string(state), `"ranges":[`)
}

// checkAfterQuiet pauses the workload until an acknowledged checkpoint of s
// covers everything written, and compares what is committed by then with
// the tables. It halts a and returns how many checkpoints it acknowledged.
func (c *crashRun) checkAfterQuiet(s *testsupport.Session, a *acker, w *testsupport.Workload, round int) int {
	t := c.t
	w.Pause()
	defer w.Resume()
	target := c.f.walLSN(t, "pg_current_wal_insert_lsn()")
	// A transaction on a table that is published but not captured moves the
	// stream's cursor past target even while nothing captured changes.
	c.f.exec(t, `INSERT INTO public.crash_sentinel VALUES (0, 0) ON CONFLICT (id) DO UPDATE SET n = crash_sentinel.n + 1`)
	waitSession(s, 30*time.Second, func() bool { return cursorOf(t, s.AckedState()) > target })
	n := a.halt()
	state := s.AckedState()
	if cursorOf(t, state) <= target {
		t.Fatalf("round %d: no acknowledged checkpoint passed %s within 30s; last stderr lines:\n%s", round, target, tailLines(s.Stderr(), 15))
	}
	c.checks++
	docs := committedDocs(s, n)
	for i, tbl := range c.tables[:c.bound] {
		all := append(slices.Clip(c.committed[i]), docs[i]...)
		query, args, what := tbl.query, []any(nil), "backfilled"
		if where, whereArgs, ok := c.scanned(state, tbl); ok {
			query, args, what = tbl.query+" WHERE "+where, whereArgs, fmt.Sprintf("backfilled where %s %v", where, whereArgs)
		}
		if d := diffAgainstTable(t, c.f, all, []string{"/" + tbl.key}, query, args...); !d.ok() {
			t.Errorf("round %d, %s (%s): the committed documents differ from the table: %s", round, tbl.name, what, d)
		}
	}
	return n
}

// scanned returns the condition on the table's rows that its backfill has
// read (with its parameters), and false if the table is backfilled. A
// backfill split into ranges has read, in each range, the keys after the
// previous range's end up to its own position (its end once done).
func (c *crashRun) scanned(state json.RawMessage, tbl crashTable) (string, []any, bool) {
	t := c.t
	var st struct {
		Streams map[string]sqlcapture.StreamState `json:"streams"`
	}
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatalf("state %s: %v", state, err)
	}
	ss := st.Streams[protocol.StateKey([]string{"public", tbl.name}, 0)]
	if ss.Mode == sqlcapture.ModeActive {
		return "", nil, false
	}
	decode := func(pos []byte) any {
		key, err := sqlcapture.DecodeKey(pos)
		if err != nil || len(key) != 1 {
			t.Fatalf("a backfill position of %s in %s does not decode to one value: %v", tbl.name, state, err)
		}
		return key[0]
	}
	ranges := ss.Ranges
	if len(ranges) == 0 {
		ranges = []sqlcapture.KeyRange{{Scanned: ss.Scanned}}
	}
	var args []any
	param := func(template string, pos []byte) string {
		args = append(args, decode(pos))
		return strings.Replace(template, "$1", fmt.Sprintf("$%d", len(args)), 1)
	}
	above := strings.Replace(tbl.bound, "<=", ">", 1)
	var ors []string
	var prev []byte
	for _, r := range ranges {
		upper := r.Scanned
		if r.Done {
			upper = r.End
		}
		var ands []string
		if prev != nil {
			ands = append(ands, param(above, prev))
		}
		switch {
		case upper != nil:
			ands = append(ands, param(tbl.bound, upper))
		case !r.Done:
			ands = append(ands, "false")
		}
		if len(ands) == 0 {
			ands = []string{"true"}
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		prev = r.End
	}
	return strings.Join(ors, " OR "), args, true
}

// backfilling reports whether any binding is not yet backfilled.
func backfilling(t *testing.T, state json.RawMessage, bindings []testsupport.Binding) bool {
	for _, b := range bindings {
		if streamMode(t, state, protocol.StateKey([]string{b.Namespace, b.Stream}, b.Backfill)) != "Active" {
			return true
		}
	}
	return false
}

// waitMidChunk waits for a few checkpoints, times one more, and then waits
// part of that time, so that a kill lands in the middle of a backfill chunk
// whether chunks take milliseconds or a fraction of a second.
func waitMidChunk(s *testsupport.Session, rng *rand.Rand) {
	checkpoints := len(s.Checkpoints()) + rng.IntN(8)
	waitSession(s, 10*time.Second, func() bool { return len(s.Checkpoints()) > checkpoints })
	begin := time.Now()
	waitSession(s, 10*time.Second, func() bool { return len(s.Checkpoints()) > checkpoints+1 })
	waitSession(s, time.Duration(rng.Int64N(int64(time.Since(begin))+1)), nil)
}

// waitSession waits until cond (if set) holds, the connector exits, or
// timeout passes.
func waitSession(s *testsupport.Session, timeout time.Duration, cond func() bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for {
		if exited, _ := s.Exited(); exited || (cond != nil && cond()) {
			return
		}
		select {
		case <-deadline.C:
			return
		case <-poll.C:
		}
	}
}

// crashTable is a table of the crash test.
type crashTable struct {
	name, key string
	pool      []any
	big       bool
	query     string // rows for diffAgainstTable
	bound     string // restricts query to the keys up to $1, in the engine's order
}

// crashTables creates and fills the crash test's tables.
func crashTables(t *testing.T, f *fixture) []crashTable {
	t.Helper()
	traps := testsupport.CollationTrapKeys()
	intTable := func(name string, keys int) crashTable {
		return crashTable{name: name, key: "id", pool: testsupport.IntKeys(keys), bound: "id <= $1",
			query: `SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v, 'n', n)::text FROM public.` + name}
	}
	tables := []crashTable{
		intTable("crash_int", 400),
		{name: "crash_text", key: "k", pool: testsupport.StringKeys(traps), big: true, bound: `k COLLATE "C" <= $1`,
			query: `SELECT json_build_array(k)::text, json_build_object('k', k, 'v', v, 'n', n, 'big', big)::text FROM public.crash_text`},
	}
	f.exec(t, `CREATE TABLE public.crash_int (id bigint PRIMARY KEY, v text, n bigint NOT NULL)`)
	f.exec(t, `INSERT INTO public.crash_int SELECT g, 'seed ' || g, 0 FROM generate_series(0, 399) g WHERE g % 3 <> 0`)
	// Under the default replica identity a key-changing update carries no
	// old values, so a TOASTed column would be lost from the new key's
	// document (a documented limitation); FULL sends the old row.
	f.exec(t, `CREATE TABLE public.crash_text (k text PRIMARY KEY, v text, n bigint NOT NULL, big text)`)
	f.exec(t, `ALTER TABLE public.crash_text REPLICA IDENTITY FULL`)
	if f.hasICU(t) {
		tables = append(tables, crashTable{name: "crash_icu", key: "k", pool: testsupport.StringKeys(traps), bound: `k COLLATE "C" <= $1`,
			query: `SELECT json_build_array(k)::text, json_build_object('k', k, 'v', v, 'n', n)::text FROM public.crash_icu`})
		f.exec(t, `CREATE TABLE public.crash_icu (k text COLLATE "en-x-icu" PRIMARY KEY, v text, n bigint NOT NULL)`)
	} else {
		t.Log(`the server has no ICU collations: the table with a COLLATE "en-x-icu" key is left out`)
	}
	for _, tbl := range tables[1:] {
		for i, k := range traps {
			if i%3 == 0 {
				f.exec(t, fmt.Sprintf(`INSERT INTO public.%s (k, v, n) VALUES ($1, $2, 0)`, tbl.name), k, fmt.Sprintf("seed %d", i))
			}
		}
	}
	tables = append(tables, intTable("crash_late", 300))
	f.exec(t, `CREATE TABLE public.crash_late (id integer PRIMARY KEY, v text, n bigint NOT NULL)`)
	f.exec(t, `INSERT INTO public.crash_late SELECT g, 'seed ' || g, 0 FROM generate_series(0, 299) g WHERE g % 4 <> 0`)
	for _, tbl := range tables {
		f.exec(t, `ANALYZE public.`+tbl.name)
	}
	return tables
}

// acker plays the runtime's acknowledgements: every so often it
// acknowledges a random number of the checkpoints read so far, as the
// runtime does once their transactions commit.
type acker struct {
	s     *testsupport.Session
	rng   *rand.Rand
	stop  chan struct{}
	done  chan struct{}
	acked int
}

// startAcker acknowledges the checkpoints of s after the first acked ones.
func startAcker(s *testsupport.Session, rng *rand.Rand, acked int) *acker {
	a := &acker{s: s, rng: rng, stop: make(chan struct{}), done: make(chan struct{}), acked: acked}
	go a.run()
	return a
}

func (a *acker) run() {
	defer close(a.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-timer.C:
		}
		if n := len(a.s.Checkpoints()) - a.acked; n > 0 {
			k := 1 + a.rng.IntN(n)
			a.s.Ack(k)
			a.acked += k
		}
		timer.Reset(time.Duration(a.rng.Int64N(int64(50 * time.Millisecond))))
	}
}

// halt stops acknowledging and returns how many checkpoints of the session
// are acknowledged.
func (a *acker) halt() int {
	close(a.stop)
	<-a.done
	return a.acked
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
