package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

// streamSmallTransactions makes the server stream every transaction past
// 64 kB of changes while in progress (on 14 and later), so that modest row
// counts exercise streaming: logical_decoding_work_mem is read by the
// walsender, which takes the database's settings.
func (f *fixture) streamSmallTransactions(t *testing.T) {
	t.Helper()
	f.exec(t, fmt.Sprintf(`ALTER DATABASE %s SET logical_decoding_work_mem = '64kB'`, pgx.Identifier{f.db}.Sanitize()))
}

// streamedTxns returns how many transactions the server streamed to the
// fixture's slot while in progress (pg_stat_replication_slots, 14+).
func (f *fixture) streamedTxns(t *testing.T) int64 { return f.slotStreamStat(t, "stream_txns") }

// streamCount returns how many times the server streamed a block of an
// in-progress transaction to the fixture's slot (14+).
func (f *fixture) streamCount(t *testing.T) int64 { return f.slotStreamStat(t, "stream_count") }

// streamedInsert inserts the rows $1 to $2 of public.st, 60-character
// values: a few thousand of them outgrow logical_decoding_work_mem at 64kB.
const streamedInsert = `INSERT INTO public.st SELECT g, rpad(g::text, 60, 'x') FROM generate_series($1::int, $2::int) g`

// execOn runs sql on c, failing the test on error.
func execOn(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// slotStreamStat reads a counter of pg_stat_replication_slots for the
// fixture's slot; column is one of the two above.
func (f *fixture) slotStreamStat(t *testing.T, column string) int64 {
	t.Helper()
	var n int64
	err := f.conn.QueryRow(context.Background(), `SELECT coalesce(sum(`+column+`), 0)::bigint FROM pg_stat_replication_slots WHERE slot_name = $1`, f.slot).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStreamedTransactions: large transactions streamed while in progress
// (protocol version 2, 14 and later; 13 receives them whole at commit, and
// the same outcome is required of it) are emitted at their commit, in
// commit order, each row exactly once:
//
//   - two transactions whose streamed blocks interleave commit in the
//     reverse of the order they began in;
//   - one rolls back to a savepoint (a nested one inside it too), releases
//     another, and updates and deletes rows it inserted;
//   - one adds a column half-way, so that its later rows decode with a
//     Relation message sent inside the stream;
//   - one is rolled back whole, and none of its rows may appear.
func TestStreamedTransactions(t *testing.T) {
	f := newFixture(t)
	f.streamSmallTransactions(t)
	f.exec(t, `CREATE TABLE public.st (id int PRIMARY KEY, v text NOT NULL)`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "st", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the empty table backfilled", func(s *testsupport.Session) bool {
		return !backfilling(t, s.State(), bindings)
	})

	a, b := f.pg.Connect(t, f.db), f.pg.Connect(t, f.db)
	run := func(c *pgx.Conn, sql string, args ...any) { t.Helper(); execOn(t, c, sql, args...) }
	ins := streamedInsert
	// Interleaved, committed in the reverse of their start order.
	run(a, "BEGIN")
	run(a, ins, 1, 3000)
	run(b, "BEGIN")
	run(b, ins, 10001, 13000)
	run(a, ins, 3001, 6000)
	run(b, ins, 13001, 16000)
	run(b, "COMMIT")
	run(a, "COMMIT")
	// Savepoints.
	run(a, "BEGIN")
	run(a, ins, 20001, 23000)
	run(a, "SAVEPOINT s1")
	run(a, ins, 23001, 26000)
	run(a, "SAVEPOINT s1a")
	run(a, ins, 26001, 27000)
	run(a, "ROLLBACK TO SAVEPOINT s1") // also discards s1a's rows
	run(a, "SAVEPOINT s2")
	run(a, ins, 27001, 29000)
	run(a, "RELEASE SAVEPOINT s2")
	run(a, `UPDATE public.st SET v = 'updated' WHERE id BETWEEN 20001 AND 20500`)
	run(a, `DELETE FROM public.st WHERE id BETWEEN 20501 AND 21000`)
	run(a, ins, 29001, 30000)
	run(a, "COMMIT")
	// A column added inside a streamed transaction.
	run(a, "BEGIN")
	run(a, ins, 40001, 42000)
	run(a, `ALTER TABLE public.st ADD COLUMN w int`)
	run(a, `INSERT INTO public.st SELECT g, rpad(g::text, 60, 'x'), g FROM generate_series(42001, 44000) g`)
	run(a, "COMMIT")
	// Rolled back whole.
	run(b, "BEGIN")
	run(b, ins, 50001, 56000)
	run(b, "ROLLBACK")
	run(a, `INSERT INTO public.st VALUES (99999, 'sentinel', 0)`)

	s.WaitFor(t, 60*time.Second, "the sentinel row", func(s *testsupport.Session) bool {
		docs := s.Docs()
		return len(docs) > 0 && parseDoc(t, docs[len(docs)-1].Doc).Fields["id"] == float64(99999)
	})
	docs := s.Docs()
	var raw []json.RawMessage
	seen := map[float64]int{}
	var order []float64 // the first id of each transaction, in emitted order
	lastTx := int64(-1)
	for _, c := range docs {
		raw = append(raw, c.Doc)
		d := parseDoc(t, c.Doc)
		id := d.Fields["id"].(float64)
		if d.Meta.Op == "c" {
			seen[id]++
		}
		if d.Meta.Source.TxID != lastTx {
			lastTx = d.Meta.Source.TxID
			order = append(order, id)
		}
		if (id > 23000 && id <= 27000) || (id > 50000 && id <= 56000) {
			t.Fatalf("a row of a rolled back (sub)transaction was emitted: %s", c.Doc)
		}
		if len(d.Meta.Source.Loc) != 3 || d.Meta.Source.Loc[2] == 0 || d.Meta.Source.TsMs == 0 {
			t.Fatalf("a document's source lacks its commit: %s", c.Doc)
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("row %v was inserted %d times", id, n)
		}
	}
	wantOrder := []float64{10001, 1, 20001, 40001, 99999}
	if fmt.Sprint(order) != fmt.Sprint(wantOrder) {
		t.Errorf("transactions were emitted in the order of their first rows %v, want %v (commit order)", order, wantOrder)
	}
	query := `SELECT json_build_array(id)::text, jsonb_strip_nulls(to_jsonb(st))::text FROM public.st` // w is null, and absent from the documents, before it was added
	if d := diffAgainstTable(t, f, raw, []string{"/id"}, query); !d.ok() {
		t.Errorf("the documents reduced by key differ from the table: %s", d)
	}
	if len(s.SourcedSchemas()) == 0 {
		t.Error("the column added inside a streamed transaction was not reported as a schema change")
	}
	if f.server(t).Has(pgversion.StreamingInProgress) {
		if n := f.streamedTxns(t); n < 4 {
			t.Errorf("the server streamed %d transactions in progress, want at least 4: streaming was not in use", n)
		}
	}
}

// TestStreamedTransactionCrash kills the connector with SIGKILL while the
// server streams it a large transaction, before its commit, then while it
// emits the committed transaction and once it has emitted it without the
// runtime acknowledging, and restarts it each time from the last
// acknowledged state. The runtime's committed documents must hold every
// row of the committed transaction exactly once, nothing of its rolled
// back subtransaction nor of a streamed transaction rolled back while the
// connector was down, and equal the table.
func TestStreamedTransactionCrash(t *testing.T) {
	f := newFixture(t)
	if !f.server(t).Has(pgversion.StreamingInProgress) {
		t.Skip("PostgreSQL 13 does not stream transactions in progress")
	}
	f.streamSmallTransactions(t)
	f.exec(t, `CREATE TABLE public.st (id int PRIMARY KEY, v text NOT NULL)`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "st", Key: []string{"/id"}}}
	open := func(state json.RawMessage, autoAck bool) *testsupport.Session {
		return f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, state), testsupport.SessionOptions{AutoAck: autoAck})
	}
	var committed []json.RawMessage
	var state json.RawMessage
	// commitAll takes every checkpoint of a session run with AutoAck as
	// committed; sessions without acknowledgements commit nothing.
	commitAll := func(s *testsupport.Session) {
		for _, docs := range committedDocs(s, len(s.Checkpoints())) {
			committed = append(committed, docs...)
		}
		state = s.AckedState()
	}
	hasID := func(docs []testsupport.Captured, id float64) bool {
		for _, c := range docs {
			if parseDoc(t, c.Doc).Fields["id"] == id {
				return true
			}
		}
		return false
	}

	s := open(nil, true)
	f.exec(t, `INSERT INTO public.st VALUES (1, 'before')`)
	s.WaitFor(t, 30*time.Second, "the row committed before the large transaction", func(s *testsupport.Session) bool {
		return !backfilling(t, s.State(), bindings) && hasID(s.Docs(), 1)
	})

	a, b := f.pg.Connect(t, f.db), f.pg.Connect(t, f.db)
	run := func(c *pgx.Conn, sql string, args ...any) { t.Helper(); execOn(t, c, sql, args...) }
	ins := streamedInsert
	base := f.streamCount(t)
	run(a, "BEGIN")
	run(a, ins, 1001, 11000)
	run(a, "SAVEPOINT s")
	run(a, ins, 11001, 13000)
	run(a, "ROLLBACK TO SAVEPOINT s")
	run(a, ins, 13001, 16000)
	run(b, "BEGIN")
	run(b, ins, 50001, 56000)
	waitUntil(t, 30*time.Second, "the server to stream the open transactions", func() bool { return f.streamCount(t) >= base+4 })
	s.Kill() // 1: inside the streamed transactions
	commitAll(s)

	run(a, `UPDATE public.st SET v = 'updated' WHERE id BETWEEN 1001 AND 2000`)
	run(a, "COMMIT")
	run(b, "ROLLBACK")
	const want = 10000 + 3000 // rows of the committed transaction

	s = open(state, false)
	s.WaitFor(t, 60*time.Second, "part of the committed transaction", func(s *testsupport.Session) bool {
		return len(s.Docs())+len(s.Pending()) > want/3
	})
	s.Kill() // 2: while it emits the committed transaction, acknowledging nothing

	s = open(state, false)
	s.WaitFor(t, 60*time.Second, "the whole committed transaction", func(s *testsupport.Session) bool {
		return len(s.Docs()) >= want+1000
	})
	s.Kill() // 3: after it emitted it, acknowledging nothing

	s = open(state, true)
	f.exec(t, `INSERT INTO public.st VALUES (99999, 'sentinel')`)
	s.WaitFor(t, 60*time.Second, "the sentinel row", func(s *testsupport.Session) bool { return hasID(s.Docs(), 99999) })
	s.Kill()
	commitAll(s)

	inserted := map[float64]int{}
	for _, raw := range committed {
		d := parseDoc(t, raw)
		id := d.Fields["id"].(float64)
		if (id > 11000 && id <= 13000) || id > 50000 && id <= 56000 {
			t.Fatalf("a row of a rolled back (sub)transaction was committed: %s", raw)
		}
		if d.Meta.Op == "c" {
			inserted[id]++
		}
	}
	for id, n := range inserted {
		if n != 1 {
			t.Errorf("row %v was committed as inserted %d times", id, n)
		}
	}
	if d := diffAgainstTable(t, f, committed, []string{"/id"}, `SELECT json_build_array(id)::text, to_jsonb(st)::text FROM public.st`); !d.ok() {
		t.Errorf("the committed documents reduced by key differ from the table: %s", d)
	}
}
