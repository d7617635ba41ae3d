package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"pgcapture/protocol"
	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

// Each slot or cursor fault must stop the capture, exiting non-zero with a
// last stderr line (what the runtime shows) that says what happened and how
// to recover: never a silent gap in the data.

// slotTestBindings bind the table public.t of capturedOnce.
func slotTestBindings() []testsupport.Binding {
	return []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
}

// capturedOnce runs a capture of public.t until it streams with an
// acknowledged cursor, kills it, and returns its acknowledged state, once
// the slot is released.
func capturedOnce(t *testing.T, f *fixture) json.RawMessage {
	t.Helper()
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, v text)`)
	f.exec(t, `INSERT INTO public.t SELECT g, 'x' FROM generate_series(1, 3) g`)
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), slotTestBindings(), nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the table backfilled with a cursor", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "t"}, 0)) == "Active" && cursorOf(t, s.State()) != 0
	})
	s.Kill()
	f.waitSlotInactive(t)
	return s.AckedState()
}

// expectSlotFault opens a session from state and requires the connector to
// exit non-zero with a last stderr line containing every one of want.
func expectSlotFault(t *testing.T, f *fixture, state json.RawMessage, want ...string) {
	t.Helper()
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), slotTestBindings(), state), testsupport.SessionOptions{AutoAck: true})
	err := waitExit(t, s, 60*time.Second)
	last := lastLine(s.Stderr())
	if err == nil {
		t.Fatalf("the connector exited 0; want a failure saying %q; last stderr line: %s", want, last)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("the last stderr line should contain %q:\n%s", w, last)
		}
	}
	if n := len(s.Docs()) + len(s.Pending()); n > 0 {
		t.Errorf("the failing session emitted %d documents", n)
	}
}

func TestSlotDropped(t *testing.T) {
	f := newFixture(t)
	state := capturedOnce(t, f)
	f.exec(t, `SELECT pg_drop_replication_slot($1)`, f.slot)
	expectSlotFault(t, f, state, f.slot, "no longer exists", cursorOf(t, state).String(), "re-backfill")
}

func TestSlotInOtherDatabase(t *testing.T) {
	f := newFixture(t)
	other := f.pg.NewDatabase(t)
	t.Run("new capture", func(t *testing.T) {
		f.pg.Exec(t, other, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, f.slot)
		t.Cleanup(func() { f.pg.Exec(t, other, `SELECT pg_drop_replication_slot($1)`, f.slot) })
		f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, v text)`)
		expectSlotFault(t, f, nil, f.slot, fmt.Sprintf("belongs to database %s", quoted(other)), "slotName")
		var db string
		if err := f.conn.QueryRow(context.Background(), `SELECT database FROM pg_replication_slots WHERE slot_name = $1`, f.slot).Scan(&db); err != nil || db != other {
			t.Errorf("the other database's slot was touched: database %q, %v", db, err)
		}
	})
	t.Run("resumed capture", func(t *testing.T) {
		f.exec(t, `DROP TABLE public.t`)
		state := capturedOnce(t, f)
		f.exec(t, `SELECT pg_drop_replication_slot($1)`, f.slot)
		f.pg.Exec(t, other, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, f.slot)
		t.Cleanup(func() { f.pg.Exec(t, other, `SELECT pg_drop_replication_slot($1)`, f.slot) })
		expectSlotFault(t, f, state, f.slot, fmt.Sprintf("belongs to database %s", quoted(other)), "slotName")
	})
}

// quoted renders a name the way the text log format shows a quoted string
// inside its msg="…" field.
func quoted(name string) string { return `\"` + name + `\"` }

func TestSlotInUseByAnotherProcess(t *testing.T) {
	f := newFixture(t)
	state := capturedOnce(t, f)

	// A replication connection of the test's own streams from the slot, as
	// a second capture with the same slotName would.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	holder, err := pgconn.Connect(ctx, f.pg.SuperuserURL(f.db)+"&replication=database")
	if err != nil {
		t.Fatalf("opening a replication connection: %v", err)
	}
	t.Cleanup(func() { holder.Close(context.Background()) })
	if err := pglogrepl.StartReplication(ctx, holder, f.slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'flow_publication'"},
	}); err != nil {
		t.Fatalf("streaming from slot %s: %v", f.slot, err)
	}
	var pid int32
	waitUntil(t, 30*time.Second, "the replication connection to hold the slot", func() bool {
		err := f.conn.QueryRow(context.Background(), `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active`, f.slot).Scan(&pid)
		return err == nil
	})
	if want := holder.PID(); uint32(pid) != want {
		t.Fatalf("slot %s is held by pid %d, not the test's replication connection (pid %d)", f.slot, pid, want)
	}
	expectSlotFault(t, f, state, f.slot, fmt.Sprintf("in use by another process (pid %d)", pid))
}

func TestCursorBehindSlot(t *testing.T) {
	f := newFixture(t)
	state := capturedOnce(t, f)
	// Committed synchronously: a slot advances only up to flushed WAL.
	f.exec(t, `SET synchronous_commit = on; INSERT INTO public.t VALUES (10, 'changed while stopped')`)
	f.exec(t, `SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())`, f.slot)
	advanced := f.confirmedFlush(t)
	if advanced <= cursorOf(t, state) {
		t.Fatalf("the slot did not advance past the checkpoint: %s <= %s", advanced, cursorOf(t, state))
	}
	expectSlotFault(t, f, state, f.slot, fmt.Sprintf("advanced to %s, past the capture's checkpoint at %s", advanced, cursorOf(t, state)), "re-backfill")
}

// TestSlotInvalidated lets a slot fall further behind than
// max_slot_wal_keep_size allows, so that PostgreSQL invalidates it
// (wal_status 'lost'): once while the connector is stopped, and once while
// it runs without its checkpoints being acknowledged.
func TestSlotInvalidated(t *testing.T) {
	pg := testsupport.StartPostgres(t, testsupport.Options{Settings: map[string]string{"max_slot_wal_keep_size": "1MB"}})

	t.Run("while stopped", func(t *testing.T) {
		f := newFixtureOn(t, pg)
		state := capturedOnce(t, f)
		f.loseSlot(t)
		expectSlotFault(t, f, state, f.slot, "invalidated", "wal_status 'lost'", "re-backfill")
	})

	t.Run("while running", func(t *testing.T) {
		f := newFixtureOn(t, pg)
		state := capturedOnce(t, f)
		s := f.connector.Open(t, testsupport.OpenRequest(f.config(), slotTestBindings(), state), testsupport.SessionOptions{})
		s.WaitOpened(t, 30*time.Second)
		waitUntil(t, 30*time.Second, "the connector to stream from the slot", func() bool {
			var active bool
			if err := f.conn.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, f.slot).Scan(&active); err != nil {
				t.Fatal(err)
			}
			return active
		})
		f.loseSlot(t)
		err := waitExit(t, s, 60*time.Second)
		last := lastLine(s.Stderr())
		if err == nil {
			t.Fatalf("the connector exited 0 after its slot was invalidated; last stderr line: %s", last)
		}
		for _, w := range []string{f.slot, "invalidated", "re-backfill"} {
			if !strings.Contains(last, w) {
				t.Errorf("the last stderr line should contain %q:\n%s", w, last)
			}
		}
	})
}

// TestSlotInvalidatedWhileIdle stops a capture for longer than
// idle_replication_slot_timeout (PostgreSQL 18), so that a checkpoint
// invalidates its slot with invalidation_reason 'idle_timeout': the resumed
// capture must say so, naming the slot, the setting and the way back.
func TestSlotInvalidatedWhileIdle(t *testing.T) {
	if s := newFixture(t).server(t); !s.Has(pgversion.SlotIdleTimeout) {
		t.Skipf("PostgreSQL %s has no idle_replication_slot_timeout (new in 18)", s.Version)
	}
	pg := testsupport.StartPostgres(t, testsupport.Options{Settings: map[string]string{"idle_replication_slot_timeout": "1s"}})
	f := newFixtureOn(t, pg)
	state := capturedOnce(t, f)
	waitUntil(t, 60*time.Second, "a checkpoint to invalidate the idle slot", func() bool {
		f.exec(t, `CHECKPOINT`)
		var reason string
		if err := f.conn.QueryRow(context.Background(), `SELECT coalesce(invalidation_reason, '') FROM pg_replication_slots WHERE slot_name = $1`, f.slot).Scan(&reason); err != nil {
			t.Fatal(err)
		}
		return reason == "idle_timeout"
	})
	expectSlotFault(t, f, state, f.slot, "invalidated", "idle_timeout", "raise idle_replication_slot_timeout", "re-backfill")
}

// loseSlot writes WAL and forces checkpoints until PostgreSQL invalidates
// the fixture's slot for exceeding max_slot_wal_keep_size.
func (f *fixture) loseSlot(t *testing.T) {
	t.Helper()
	f.exec(t, `CREATE TABLE IF NOT EXISTS public.filler (pad text)`)
	waitUntil(t, 60*time.Second, "the slot's wal_status to become 'lost'", func() bool {
		f.exec(t, `INSERT INTO public.filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)`)
		f.exec(t, `SELECT pg_switch_wal()`)
		f.exec(t, `CHECKPOINT`)
		var status string
		if err := f.conn.QueryRow(context.Background(), `SELECT COALESCE(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, f.slot).Scan(&status); err != nil {
			t.Fatal(err)
		}
		return status == "lost"
	})
}
