package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestAcknowledgementsMoveTheSlot checks that the slot's confirmed_flush_lsn
// follows exactly the acknowledged checkpoints: acknowledgements of several
// checkpoints at once, of one, of "0" (which means one), and ones that
// arrive while a backfill chunk is running. A watcher samples the slot all
// along and checks every sample against the acknowledgements sent before it.
func TestAcknowledgementsMoveTheSlot(t *testing.T) {
	f := newFixture(t)
	f.advanced["backfill_chunk_size"] = 5
	// One chunk at a time: the first table is backfilled before the
	// second's chunk waits for the lock (a round of both would wait too).
	f.advanced["backfill_connections"] = 1
	f.exec(t, `CREATE TABLE public.first (id int PRIMARY KEY, v text)`)
	f.exec(t, `INSERT INTO public.first SELECT g, 'x' FROM generate_series(1, 20) g`)
	f.exec(t, `CREATE TABLE public.second (id int PRIMARY KEY, v text)`)
	f.exec(t, `INSERT INTO public.second SELECT g, 'y' FROM generate_series(1, 20) g`)
	f.exec(t, `CREATE TABLE public.warmup (id int PRIMARY KEY)`)
	firstKey := protocol.StateKey([]string{"public", "first"}, 0)
	secondKey := protocol.StateKey([]string{"public", "second"}, 0)

	// A first session creates the slot (which waits for running
	// transactions) and a checkpoint to resume from.
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "warmup", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the warm-up binding to stream", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "warmup"}, 0)) == "Active"
	})
	s.Kill()
	state := s.AckedState()
	f.waitSlotInactive(t)

	// A lock on the second table holds its first chunk query, so that
	// acknowledgements arrive while the engine is inside a chunk.
	locker := f.pg.Connect(t, f.db)
	lock, err := locker.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(context.Background(), `LOCK TABLE public.second IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	w := watchSlot(t, f)
	bindings = append(bindings,
		testsupport.Binding{Namespace: "public", Stream: "first", Key: []string{"/id"}},
		testsupport.Binding{Namespace: "public", Stream: "second", Key: []string{"/id"}})
	s = f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, state), testsupport.SessionOptions{})
	s.WaitFor(t, 30*time.Second, "the first table backfilled and a chunk of the second blocked on the lock", func(s *testsupport.Session) bool {
		if streamMode(t, s.State(), firstKey) != "Active" {
			return false
		}
		var blocked bool
		if err := f.conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%second%')`).Scan(&blocked); err != nil {
			t.Fatal(err)
		}
		return blocked
	})
	cursors := checkpointCursors(t, s, state)
	if len(cursors) < 4 || cursors[2] == 0 {
		t.Fatalf("expected at least 4 checkpoints, the third with a cursor, before the second table's backfill; got cursors %v", cursors)
	}
	if got := f.confirmedFlush(t); got >= cursors[2] {
		t.Fatalf("confirmed_flush_lsn is %s before any acknowledgement, at or past checkpoint 3 (%s)", got, cursors[2])
	}

	// Three checkpoints, acknowledged as two and one while the chunk waits.
	w.ack(s, 2)
	w.ack(s, 1)
	if err := lock.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.waitConfirmed(t, cursors[2], "the three checkpoints acknowledged during the chunk")

	s.WaitFor(t, 30*time.Second, "the second table backfilled", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), secondKey) == "Active"
	})
	cursors = checkpointCursors(t, s, state)
	n := len(cursors)
	if got := f.confirmedFlush(t); got != cursors[2] {
		t.Errorf("after the backfill, with 3 of %d checkpoints acknowledged, confirmed_flush_lsn is %s, want %s", n, got, cursors[2])
	}
	// All but the last, in one acknowledgement; then the last.
	w.ack(s, n-4)
	w.waitConfirmed(t, cursors[n-2], fmt.Sprintf("%d checkpoints acknowledged at once", n-4))
	w.ack(s, 1)
	w.waitConfirmed(t, cursors[n-1], "the last backfill checkpoint acknowledged")

	// While streaming: an acknowledgement of 0 checkpoints means one.
	for i := range 3 {
		f.exec(t, `INSERT INTO public.second VALUES ($1, 'z')`, 100+i)
	}
	s.WaitFor(t, 30*time.Second, "the inserts", func(s *testsupport.Session) bool { return len(docsOf(s, 2)) >= 23 })
	cursors = checkpointCursors(t, s, state)
	w.ack(s, 0)
	w.waitConfirmed(t, cursors[n], `an acknowledgement of "0" checkpoints`)

	w.check(t, s, state)
}

// slotWatch samples a fixture's slot while a test acknowledges checkpoints.
type slotWatch struct {
	f    *fixture
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	acked   int // checkpoints acknowledged so far
	samples []slotSample
	err     error
}

type slotSample struct {
	confirmed pglogrepl.LSN
	acked     int // checkpoints acknowledged by the time the sample was read
}

// watchSlot samples the slot's confirmed_flush_lsn every few milliseconds
// until the test ends.
func watchSlot(t *testing.T, f *fixture) *slotWatch {
	conn := f.pg.Connect(t, f.db)
	w := &slotWatch{f: f, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		poll := time.NewTicker(5 * time.Millisecond)
		defer poll.Stop()
		for {
			var lsn string
			err := conn.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots
				WHERE slot_name = $1 AND confirmed_flush_lsn IS NOT NULL`, f.slot).Scan(&lsn)
			// Acknowledgements counted after the read: one sent meanwhile
			// may already show, so it must count.
			w.mu.Lock()
			if err == nil {
				confirmed, perr := pglogrepl.ParseLSN(lsn)
				w.samples = append(w.samples, slotSample{confirmed, w.acked})
				err = perr
			} else if errors.Is(err, pgx.ErrNoRows) {
				err = nil // the slot does not exist yet
			}
			if err != nil && w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-poll.C:
			}
		}
	}()
	t.Cleanup(w.halt)
	return w
}

func (w *slotWatch) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// ack acknowledges n checkpoints of s (0 meaning one, as the connector must
// read it).
func (w *slotWatch) ack(s *testsupport.Session, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.Ack(n)
	w.acked += max(n, 1)
}

// waitConfirmed waits until the slot's confirmed_flush_lsn is exactly want.
func (w *slotWatch) waitConfirmed(t *testing.T, want pglogrepl.LSN, what string) {
	t.Helper()
	var got pglogrepl.LSN
	deadline := time.Now().Add(30 * time.Second)
	for got = w.f.confirmedFlush(t); got != want; got = w.f.confirmedFlush(t) {
		if got > want {
			t.Fatalf("after %s, confirmed_flush_lsn is %s, past that checkpoint's cursor %s", what, got, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, confirmed_flush_lsn is %s, want that checkpoint's cursor %s", what, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// check stops sampling and checks that no sample passed the cursor of the
// newest checkpoint acknowledged by the time it was read, or else the
// slot's position when sampling began. state is what s was opened with.
func (w *slotWatch) check(t *testing.T, s *testsupport.Session, state json.RawMessage) {
	t.Helper()
	w.halt()
	if w.err != nil {
		t.Fatalf("sampling the slot: %v", w.err)
	}
	cursors := checkpointCursors(t, s, state)
	if len(w.samples) == 0 {
		t.Fatal("no samples of the slot were taken")
	}
	initial := w.samples[0].confirmed
	violations := 0
	for _, sample := range w.samples {
		allowed := initial
		if sample.acked > 0 {
			allowed = max(allowed, cursors[sample.acked-1])
		}
		if sample.confirmed > allowed {
			if violations++; violations <= 5 {
				t.Errorf("confirmed_flush_lsn was %s with %d checkpoints acknowledged, past the newest acknowledged cursor %s", sample.confirmed, sample.acked, allowed)
			}
		}
	}
	t.Logf("%d samples of the slot, %d checkpoints, %d acknowledged", len(w.samples), len(cursors), w.acked)
}
