package replication

import (
	"io"
	"testing"

	"github.com/sirupsen/logrus"

	"pgcapture/sqlcapture"
)

// TestFenceAtKeepalive: a fence at a WAL position is reported, as a
// Watermark and a Commit at the keepalive's position, by the first
// keepalive between transactions that reaches it, and only once.
func TestFenceAtKeepalive(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fenceAt   uint64
		inTxn     bool
		keepalive uint64
		reported  bool
	}{
		{name: "keepalive past the fence", fenceAt: 100, keepalive: 150, reported: true},
		{name: "keepalive at the fence", fenceAt: 100, keepalive: 100, reported: true},
		{name: "keepalive short of the fence", fenceAt: 100, keepalive: 99},
		{name: "inside a transaction", fenceAt: 100, inTxn: true, keepalive: 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := logrus.New()
			log.SetOutput(io.Discard)
			s := newStream(nil, 0, Options{Logger: log})
			s.fence.Store(&lsnFence{id: "f1", lsn: tc.fenceAt})
			s.inTxn = tc.inTxn
			s.fenceAtKeepalive(tc.keepalive)
			s.fenceAtKeepalive(tc.keepalive) // a second keepalive reports nothing more

			var events []sqlcapture.Event
			for len(s.events) > 0 {
				events = append(events, (<-s.events).Events...)
			}
			if !tc.reported {
				if len(events) != 0 || s.fence.Load() == nil {
					t.Fatalf("events %v, pending fence %v: want nothing reported and the fence still pending", events, s.fence.Load())
				}
				return
			}
			if len(events) != 2 || s.fence.Load() != nil {
				t.Fatalf("events %v: want a Watermark and a Commit, once", events)
			}
			if w, ok := events[0].(*sqlcapture.Watermark); !ok || w.ID != "f1" {
				t.Errorf("first event %#v, want the Watermark f1", events[0])
			}
			if c, ok := events[1].(*sqlcapture.Commit); !ok || c.Position != tc.keepalive {
				t.Errorf("second event %#v, want a Commit at %d", events[1], tc.keepalive)
			}
		})
	}
}

// TestFenceAtCommit: a commit ending at or past the fence reports it
// before its own Commit event.
func TestFenceAtCommit(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := newStream(nil, 0, Options{Logger: log})
	s.fence.Store(&lsnFence{id: "f2", lsn: 200})
	s.fenceAtCommit(199)
	if s.fence.Load() == nil {
		t.Fatal("a commit ending before the fence took it")
	}
	s.fenceAtCommit(250)
	if s.fence.Load() != nil {
		t.Fatal("a commit ending past the fence left it pending")
	}
	b := <-s.events
	if len(b.Events) != 1 {
		t.Fatalf("events %v, want one Watermark", b.Events)
	}
	if w, ok := b.Events[0].(*sqlcapture.Watermark); !ok || w.ID != "f2" {
		t.Errorf("event %#v, want the Watermark f2", b.Events[0])
	}
}
