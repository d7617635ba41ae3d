package replication

import "pgcapture/sqlcapture"

// Batches bound what the stream holds: the engine is handed batches of up
// to batchChanges changes (or batchBytes of documents), at most
// batchesQueued of them waiting, so memory stays bounded whatever the size
// of a transaction, and a released batch's memory is reused.
const (
	batchChanges  = 1024
	batchBytes    = 1 << 20
	batchesQueued = 4
)

// Release implements sqlcapture.ReplicationStream.
func (s *Stream) Release(b *sqlcapture.Batch) {
	b.Reset()
	if cap(b.Arena) > 4*batchBytes {
		b.Arena = nil // held a huge value: do not keep its memory
	}
	select {
	case s.free <- b:
	default: // more batches than were ever in flight: let it go
	}
}

// current returns the batch being filled, taking a released one if any.
func (s *Stream) current() *sqlcapture.Batch {
	if s.batch == nil {
		select {
		case s.batch = <-s.free:
		default:
			s.batch = &sqlcapture.Batch{Changes: make([]sqlcapture.Change, 0, batchChanges)}
		}
	}
	return s.batch
}

// send adds an event to the current batch and hands the batch to the
// engine, so that what the event says (a commit, a position) is acted on
// now.
func (s *Stream) send(ev sqlcapture.Event) {
	b := s.current()
	b.Events = append(b.Events, ev)
	s.flush()
}

// flush hands the current batch to the engine. After Close the batch is
// dropped instead: nobody reads Events while the stream drains.
func (s *Stream) flush() {
	if s.batch == nil || len(s.batch.Events) == 0 {
		return
	}
	if s.streamed.cur != nil {
		return // a streamed transaction's events go to its log (streamed.go)
	}
	select {
	case s.events <- s.batch:
	default:
		// The engine is busy (with a backfill chunk, say): the server's
		// silence meanwhile is the receiver's, not the server's.
		s.handingOff.Store(true)
		select {
		case s.events <- s.batch:
		case <-s.closed:
		}
		s.handingOff.Store(false)
	}
	s.batch = nil
}

// queueChange adds to b the change whose key is arena[start:keyEnd] and
// whose document follows it to the end of arena, and hands b to the engine
// when it is full.
func (s *Stream) queueChange(b *sqlcapture.Batch, stream sqlcapture.StreamID, op sqlcapture.Op, arena []byte, start, keyEnd int) {
	b.Arena = arena
	b.Changes = append(b.Changes, sqlcapture.Change{
		Stream: stream,
		Op:     op,
		Key:    arena[start:keyEnd:keyEnd],
		Doc:    arena[keyEnd:len(arena):len(arena)],
	})
	b.Events = append(b.Events, &b.Changes[len(b.Changes)-1])
	if len(b.Changes) == cap(b.Changes) || len(b.Arena) >= batchBytes {
		s.flush()
	}
}
