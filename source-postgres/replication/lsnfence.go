package replication

import (
	"context"

	"github.com/jackc/pglogrepl"

	"pgcapture/sqlcapture"
)

// A fence at a WAL position, for a server that cannot be written (a
// physical standby): instead of a watermark row that the stream reports
// when it decodes it, the stream reports the fence once it has delivered
// every transaction that commits at or before the position. The server
// tells how far it has read in its keepalives, which it sends when it has
// nothing more to send and whenever the stream asks for a reply.

// lsnFence is a pending fence: id is reported once the stream passes lsn.
type lsnFence struct {
	id  string
	lsn uint64
}

// FenceAt makes the stream report a Watermark carrying id, followed by a
// Commit, as soon as it has delivered every transaction committing at or
// before lsn: at the first commit that ends at or past lsn (before that
// commit), or, between transactions, at a keepalive whose position has
// reached lsn. A fence replaces one still pending. It asks the server for
// a keepalive at once, so that an idle stream answers within a round trip.
func (s *Stream) FenceAt(ctx context.Context, id string, lsn uint64) error {
	s.fence.Store(&lsnFence{id: id, lsn: lsn})
	select {
	case s.fenceSet <- struct{}{}:
	default: // the reporter has been told already
	}
	return s.sendStatus(ctx, true)
}

// fenceReached takes the pending fence if the stream's position pos has
// reached it, and returns it; nil otherwise.
func (s *Stream) fenceReached(pos uint64) *lsnFence {
	f := s.fence.Load()
	if f == nil || pos < f.lsn || !s.fence.CompareAndSwap(f, nil) {
		return nil
	}
	return f
}

// fenceAtKeepalive reports a fence that a keepalive's position reached
// while no transaction is open, as a Watermark and a Commit at that
// position: every transaction committing below it has been delivered, as
// for an idle Keepalive.
func (s *Stream) fenceAtKeepalive(walEnd uint64) {
	if s.inTxn {
		return
	}
	f := s.fenceReached(walEnd)
	if f == nil {
		return
	}
	s.idleLSN = max(s.idleLSN, walEnd)
	s.send(&sqlcapture.Watermark{ID: f.id})
	s.send(&sqlcapture.Commit{Cursor: pglogrepl.LSN(walEnd).String(), Position: walEnd, SourceEnd: s.serverEnd})
}

// fenceAtCommit reports a fence that the commit ending at end reached,
// before the commit's own event.
func (s *Stream) fenceAtCommit(end uint64) {
	if f := s.fenceReached(end); f != nil {
		s.send(&sqlcapture.Watermark{ID: f.id})
	}
}
