package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// TestTwoCapturesOneDatabase runs two captures of one database, each with
// its own slot and publication, each capturing a table of its own and a
// shared one, concurrently with writes to all three tables (they also share
// the watermarks table, where each writes fences under its own slot name).
// Each must emit exactly its own tables' changes and match them; killing
// one must not disturb the other, and the killed one must resume where its
// acknowledged state says.
func TestTwoCapturesOneDatabase(t *testing.T) {
	a := newFixture(t)
	a.advanced["backfill_chunk_size"] = 4
	for _, table := range []string{"only_a", "only_b", "shared"} {
		a.exec(t, fmt.Sprintf(`CREATE TABLE public.%s (id int PRIMARY KEY, v text, n bigint NOT NULL)`, table))
		a.exec(t, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'seed', 0 FROM generate_series(1, 20) g`, table))
	}
	a.exec(t, `CREATE TABLE public.flow_watermarks (slot text PRIMARY KEY, watermark text)`)
	a.exec(t, `CREATE PUBLICATION pub_a FOR TABLE public.only_a, public.shared, public.flow_watermarks`)
	a.exec(t, `CREATE PUBLICATION pub_b FOR TABLE public.only_b, public.shared, public.flow_watermarks`)
	a.advanced["publicationName"] = "pub_a"
	b := &fixture{pg: a.pg, db: a.db, conn: a.conn, connector: a.connector, slot: a.slot + "_b",
		advanced: map[string]any{"backfill_chunk_size": 4, "publicationName": "pub_b"}}

	type capture struct {
		f        *fixture
		tables   []string
		bindings []testsupport.Binding
		docs     map[int][]json.RawMessage // committed documents by binding
		s        *testsupport.Session
	}
	captures := []*capture{{f: a, tables: []string{"only_a", "shared"}}, {f: b, tables: []string{"only_b", "shared"}}}
	for _, c := range captures {
		for _, table := range c.tables {
			c.bindings = append(c.bindings, testsupport.Binding{Namespace: "public", Stream: table, Key: []string{"/id"}})
		}
		c.docs = make(map[int][]json.RawMessage)
		c.s = c.f.connector.Open(t, testsupport.OpenRequest(c.f.config(), c.bindings, nil), testsupport.SessionOptions{AutoAck: true})
	}
	var tables []testsupport.WorkloadTable
	for _, table := range []string{"only_a", "only_b", "shared"} {
		tables = append(tables, testsupport.WorkloadTable{Name: "public." + table, Key: "id", Keys: testsupport.IntKeys(40)})
	}
	workload := testsupport.StartWorkload(t, a.pg, a.db, tables, testsupport.WorkloadOptions{Pause: 5 * time.Millisecond})
	for _, c := range captures {
		c.s.WaitFor(t, 60*time.Second, c.f.slot+" backfilled", func(s *testsupport.Session) bool {
			return !backfilling(t, s.State(), c.bindings)
		})
	}

	// Capture A dies; B must go on with the writes made meanwhile.
	dead := captures[0]
	dead.s.Kill()
	for binding, docs := range committedDocs(dead.s, len(dead.s.Checkpoints())) {
		dead.docs[binding] = append(dead.docs[binding], docs...)
	}
	deadState, deadSlot := dead.s.AckedState(), dead.f.confirmedFlush(t)
	before := len(captures[1].s.Checkpoints())
	start := b.confirmedFlush(t)
	waitUntil(t, 30*time.Second, "capture B to go on and its slot to advance while A is down", func() bool {
		return len(captures[1].s.Checkpoints()) > before+10 && b.confirmedFlush(t) > start
	})
	if got := dead.f.confirmedFlush(t); got != deadSlot {
		t.Errorf("the dead capture's slot moved from %s to %s", deadSlot, got)
	}
	dead.s = dead.f.connector.Open(t, testsupport.OpenRequest(dead.f.config(), dead.bindings, deadState), testsupport.SessionOptions{AutoAck: true})
	workload.Stop(t)

	// Both catch up to a sentinel committed after the writes, in the shared table.
	target := a.walLSN(t, "pg_current_wal_insert_lsn()")
	a.exec(t, `INSERT INTO public.shared VALUES (-1, 'sentinel', 0)`)
	for _, c := range captures {
		c.s.WaitFor(t, 60*time.Second, c.f.slot+" to pass the sentinel", func(s *testsupport.Session) bool {
			return cursorOf(t, s.State()) > target
		})
		c.s.Kill()
		for binding, docs := range committedDocs(c.s, len(c.s.Checkpoints())) {
			c.docs[binding] = append(c.docs[binding], docs...)
		}
	}

	for _, c := range captures {
		for binding, table := range c.tables {
			for _, raw := range c.docs[binding] {
				if d := parseDoc(t, raw); d.Meta.Source.Table != table {
					t.Fatalf("capture %s emitted a document of table %s under the binding of %s: %s", c.f.slot, d.Meta.Source.Table, table, raw)
				}
			}
			query := fmt.Sprintf(`SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v, 'n', n)::text FROM public.%s`, table)
			if d := diffAgainstTable(t, c.f, c.docs[binding], []string{"/id"}, query); !d.ok() {
				t.Errorf("capture %s, table %s: %s", c.f.slot, table, d)
			}
		}
	}
}
