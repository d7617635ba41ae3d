package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestChunkWaitsForDeliveredTransactions holds a transaction in the state
// PostgreSQL allows between writing its commit record and becoming visible:
// with a synchronous standby that never answers, its commit is in the WAL
// (and delivered by the replication stream) while new snapshots still see
// it as in progress. A backfill chunk read in that state would emit the old
// row after the stream had already passed the change, losing the update.
func TestChunkWaitsForDeliveredTransactions(t *testing.T) {
	pg := testsupport.StartPostgres(t, testsupport.Options{Settings: map[string]string{
		"synchronous_standby_names": "ghost",
		"synchronous_commit":        "local", // only the test's stuck session waits
	}})
	f := newFixtureOn(t, pg)
	f.advanced["backfill_chunk_size"] = 2
	f.exec(t, `CREATE TABLE public.warmup (id int PRIMARY KEY)`)
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, v text)`)
	f.exec(t, `INSERT INTO public.t SELECT g, 'old' FROM generate_series(1, 10) g`)

	// A first session creates the slot and a cursor, so that the second can
	// start while a transaction is stuck (creating a slot would wait for it).
	warmup := []testsupport.Binding{{Namespace: "public", Stream: "warmup", Key: []string{"/id"}}}
	s1 := f.connector.Open(t, testsupport.OpenRequest(f.config(), warmup, nil), testsupport.SessionOptions{AutoAck: true})
	s1.WaitFor(t, 30*time.Second, "the warm-up binding to stream", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "warmup"}, 0)) == "Active"
	})
	s1.Kill()
	state := s1.AckedState()

	stuck := f.pg.Connect(t, f.db)
	var pid int
	if err := stuck.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	updated := make(chan error, 1)
	go func() {
		_, err := stuck.Exec(context.Background(), "SET synchronous_commit = on; UPDATE public.t SET v = 'new' WHERE id = 10")
		updated <- err
	}()
	waitUntil(t, 30*time.Second, "the update to wait for the synchronous standby", func() bool {
		var waiting bool
		if err := f.conn.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'SyncRep')", pid).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting
	})

	bindings := append(slices.Clip(warmup), testsupport.Binding{Namespace: "public", Stream: "t", Key: []string{"/id"}})
	s2 := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, state), testsupport.SessionOptions{AutoAck: true})
	tKey := protocol.StateKey([]string{"public", "t"}, 0)
	s2.WaitFor(t, 60*time.Second, "a chunk to wait for the transaction (or the backfill to finish without it)", func(s *testsupport.Session) bool {
		return strings.Contains(s.Stderr(), "waiting for a replicated transaction to become visible") ||
			streamMode(t, s.State(), tKey) == "Active"
	})
	// Cancelling the wait makes the (locally committed) update visible.
	f.exec(t, "SELECT pg_cancel_backend($1)", pid)
	if err := <-updated; err != nil {
		t.Fatalf("the update: %v", err)
	}
	s2.WaitFor(t, 60*time.Second, "the backfill to finish", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), tKey) == "Active"
	})
	// The row must hold the update: a chunk that read it while the update
	// was invisible would leave the old value, as the stream had already
	// passed (and filtered out) the change.
	reduceAgainstTable(t, f, docsOf(s2, 1), []string{"/id"},
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM public.t`)
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
