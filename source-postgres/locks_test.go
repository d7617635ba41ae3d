package main

import (
	"context"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestLockedTableDoesNotHoldTheStart checks that a capture starts while
// another session holds an ACCESS EXCLUSIVE lock on one of its published
// tables: only that table's backfill waits for the lock. From PostgreSQL 16 on,
// reading pg_publication_tables waits for such a lock, so a start that
// read it would wait for the lock's holder.
func TestLockedTableDoesNotHoldTheStart(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.busy (id int PRIMARY KEY, v text)`)
	f.exec(t, `CREATE TABLE public.calm (id int PRIMARY KEY, v text)`)
	f.exec(t, `INSERT INTO public.busy SELECT g, 'b' FROM generate_series(1, 5) g`)
	f.exec(t, `INSERT INTO public.calm SELECT g, 'c' FROM generate_series(1, 5) g`)
	// Listed by name, so that the publication's tables are read from
	// pg_publication_rel (the fixture's FOR ALL TABLES publication is the
	// other path, taken by every other test).
	f.exec(t, `DROP PUBLICATION flow_publication`)
	f.exec(t, `CREATE PUBLICATION flow_publication FOR TABLE public.busy, public.calm WITH (publish_via_partition_root = true)`)
	// A first session creates the slot, which waits for every transaction
	// holding an xid (an ACCESS EXCLUSIVE lock takes one), and the
	// watermarks table.
	calmKey := protocol.StateKey([]string{"public", "calm"}, 0)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "calm", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the first table to stream", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), calmKey) == "Active"
	})
	s.Kill()
	state := s.AckedState()
	f.waitSlotInactive(t)

	locker := f.pg.Connect(t, f.db)
	lock, err := locker.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(context.Background())
	if _, err := lock.Exec(context.Background(), `LOCK TABLE public.busy IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	bindings = append(bindings, testsupport.Binding{Namespace: "public", Stream: "busy", Key: []string{"/id"}})
	s = f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, state), testsupport.SessionOptions{AutoAck: true})
	// Started: the engine is past its preparations and into the backfill
	// of the locked table, whose chunk query is the one thing that waits.
	s.WaitFor(t, 30*time.Second, "the capture to start and the locked table's first chunk to wait for the lock", func(s *testsupport.Session) bool {
		if s.Opened() == nil {
			return false
		}
		var blocked bool
		if err := f.conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%busy%')`).Scan(&blocked); err != nil {
			t.Fatal(err)
		}
		return blocked
	})
	f.exec(t, `INSERT INTO public.calm VALUES (6, 'streamed')`)
	if err := lock.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.WaitFor(t, 30*time.Second, "the locked table backfilled and the other's change streamed once the lock is released", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "busy"}, 0)) == "Active" && len(docsOf(s, 0)) >= 1
	})
	reduceAgainstTable(t, f, docsOf(s, 0), []string{"/id"}, `SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM public.calm WHERE id = 6`)
	reduceAgainstTable(t, f, docsOf(s, 1), []string{"/id"}, `SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM public.busy`)
	if err := s.Stop(t); err != nil {
		t.Fatal(err)
	}
}
