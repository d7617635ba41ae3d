package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"pgcapture/protocol"
	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

// idsOf returns the id field of each document, in order.
func idsOf(t *testing.T, docs []json.RawMessage) []int {
	t.Helper()
	var out []int
	for _, raw := range docs {
		id, ok := parseDoc(t, raw).Fields["id"].(float64)
		if !ok {
			t.Fatalf("document without a numeric id: %s", raw)
		}
		out = append(out, int(id))
	}
	return out
}

// TestFailoverSlotResumesOnPromotedStandby captures from a primary with
// advanced.failover_slot, acknowledges part of what it emitted, fails over
// to a standby that synchronized the slot, and resumes there from the
// acknowledged state: every row committed before and after the failover is
// captured, and nothing acknowledged before it is emitted again.
func TestFailoverSlotResumesOnPromotedStandby(t *testing.T) {
	t.Parallel()
	skipWithout(t, pgversion.SlotFailover, "has no failover slots (new in 17)")
	primary := testsupport.StartPostgres(t, testsupport.Options{})
	f := newFixtureOn(t, primary)
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, v text)`)
	f.exec(t, `INSERT INTO public.t SELECT g, 'before' FROM generate_series(1, 50) g`)
	standby := primary.StartStandby(t, testsupport.StandbyOptions{Slot: "standby", Settings: map[string]string{
		"sync_replication_slots": "on",
		"hot_standby_feedback":   "on",
	}})
	// The capture never receives a change before the standby has it.
	f.exec(t, `ALTER SYSTEM SET synchronized_standby_slots = 'standby'`)
	f.exec(t, `SELECT pg_reload_conf()`)

	f.advanced["failover_slot"] = true
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	key := protocol.StateKey([]string{"public", "t"}, 0)
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), key) == "Active"
	})
	var failover bool
	if err := f.conn.QueryRow(context.Background(), `SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, f.slot).Scan(&failover); err != nil || !failover {
		t.Fatalf("the capture's slot has failover = %v (%v), want true", failover, err)
	}
	defer func() {
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(standby.DataDir(), "postgres.log"))
			t.Logf("the standby's log:\n%s", data)
		}
	}()
	// Rows are inserted and acknowledged until the standby's copy of the
	// slot has caught up with the acknowledged checkpoint. The standby
	// keeps a copy only once the slot's catalog horizon has passed its
	// own, and the horizon moves at a record of running transactions that
	// the capture has acknowledged: one is logged with each row rather
	// than waiting the 15 s the primary takes to.
	sconn := standby.Connect(t, f.db)
	synced := func(acked pglogrepl.LSN) bool {
		var synced bool
		var confirmed string
		err := sconn.QueryRow(context.Background(), `SELECT synced, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, f.slot).Scan(&synced, &confirmed)
		lsn, _ := pglogrepl.ParseLSN(confirmed)
		return err == nil && synced && lsn >= acked
	}
	next, acked := 51, 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.exec(t, `SELECT pg_log_standby_snapshot()`)
		f.exec(t, `INSERT INTO public.t VALUES ($1, 'acknowledged')`, next)
		s.WaitFor(t, 30*time.Second, fmt.Sprintf("row %d", next), func(s *testsupport.Session) bool { return len(s.Docs()) >= next })
		next++
		n := len(s.Checkpoints())
		s.Ack(n - acked)
		acked = n
		ackedCursor := checkpointCursors(t, s, nil)[acked-1]
		caughtUp := false
		for end := time.Now().Add(time.Second); time.Now().Before(end) && !caughtUp; time.Sleep(20 * time.Millisecond) {
			caughtUp = synced(ackedCursor)
		}
		if caughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby's copy of the slot did not reach the acknowledged checkpoint %s within 30s", ackedCursor)
		}
	}
	// Emitted but never acknowledged: the promoted standby must send them again.
	unacked := next
	for ; next < unacked+20; next++ {
		f.exec(t, `INSERT INTO public.t VALUES ($1, 'unacknowledged')`, next)
	}
	s.WaitFor(t, 30*time.Second, "the unacknowledged rows", func(s *testsupport.Session) bool { return len(s.Docs()) >= next-1 })

	s.Kill()
	primary.Stop(t)
	standby.Promote(t)
	standby.Exec(t, f.db, `INSERT INTO public.t SELECT g, 'after failover' FROM generate_series($1::int, $1::int + 19) g`, next)
	last := next + 19

	cfg := f.config()
	cfg["address"] = standby.Addr()
	s2 := f.connector.Open(t, testsupport.OpenRequest(cfg, bindings, s.AckedState()), testsupport.SessionOptions{AutoAck: true})
	s2.WaitFor(t, 30*time.Second, "the rows inserted after the failover", func(s *testsupport.Session) bool {
		ids := idsOf(t, docsOf(s, 0))
		return len(ids) > 0 && slices.Max(ids) == last
	})

	before := idsOf(t, committedDocs(s, acked)[0])
	after := idsOf(t, docsOf(s2, 0))
	seen := map[int]int{}
	for _, id := range before {
		seen[id]++
	}
	for _, id := range after {
		if seen[id] > 0 {
			t.Errorf("row %d was acknowledged before the failover and emitted again after it", id)
		}
		seen[id]++
	}
	var missing []string
	for id := 1; id <= last; id++ {
		if seen[id] == 0 {
			missing = append(missing, fmt.Sprint(id))
		}
	}
	if len(missing) > 0 {
		t.Errorf("rows never captured: %s", strings.Join(missing, ", "))
	}
	if extra := slices.DeleteFunc(slices.Collect(maps.Keys(seen)), func(id int) bool { return id >= 1 && id <= last }); len(extra) > 0 {
		t.Errorf("rows captured that were never written: %v", extra)
	}
}

// TestFailoverSlotValidation: advanced.failover_slot is refused before 17
// with the reason; from 17 on, validation passes and says what a standby
// needs, and that synchronized_standby_slots is not set.
func TestFailoverSlotValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY)`)
	f.advanced["failover_slot"] = true
	_, stderr, err := f.connector.Call(t, validateRequest(f.config(), "public.t"))
	if s := f.server(t); !s.Has(pgversion.SlotFailover) {
		if err == nil || !strings.Contains(lastMessage(stderr), `"advanced.failover_slot" needs PostgreSQL 17 or later`) {
			t.Errorf("validate with failover_slot on %s: err %v, want the option refused; stderr:\n%s", s.Version, err, stderr)
		}
		return
	}
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, stderr)
	}
	for _, want := range []string{"synchronized_standby_slots is empty", "sync_replication_slots = on"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validation does not say %q:\n%s", want, stderr)
		}
	}
}
