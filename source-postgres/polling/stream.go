package polling

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/sirupsen/logrus"

	"pgcapture/sqlcapture"
)

const (
	// A batch is handed to the engine once it holds this many documents or
	// bytes, or at the end of a poll.
	batchChanges = 1024
	batchBytes   = 1 << 20
)

// Stream polls the bindings on their schedules and delivers each poll as a
// source transaction: its documents as Changes, then a Commit whose cursor
// holds every binding's Position after it. The engine checkpoints that
// cursor with the poll's documents, so a restart resumes from the last
// checkpointed poll of each binding.
type Stream struct {
	source    *Source
	poller    *poller
	positions map[string]*Position

	events chan *sqlcapture.Batch
	free   chan *sqlcapture.Batch
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before events is closed

	batch *sqlcapture.Batch
	offs  []int // where each Change's document starts in batch.Arena
}

var _ sqlcapture.ReplicationStream = (*Stream)(nil)

func startStream(ctx context.Context, src *Source, positions map[string]*Position) *Stream {
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{
		source:    src,
		poller:    &poller{conn: src.conn, log: src.log},
		positions: positions,
		events:    make(chan *sqlcapture.Batch, 2),
		free:      make(chan *sqlcapture.Batch, 4),
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	go s.run(ctx)
	return s
}

// run is the polling loop: wait for the binding due first, poll it, commit.
func (s *Stream) run(ctx context.Context) {
	defer close(s.done)
	defer close(s.events)
	for {
		b, due := s.nextDue()
		if wait := time.Until(due); wait > 0 {
			s.source.log.WithFields(logrus.Fields{"binding": b.Stream.String(), "due": due.UTC().Format(time.RFC3339Nano)}).Debug("waiting for the next poll")
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if err := s.pollOnce(ctx, b); err != nil {
			if ctx.Err() == nil {
				s.err = fmt.Errorf("polling %s: %w", b.Stream, err)
			}
			return
		}
	}
}

// nextDue returns the binding whose next poll is due first, and when: one
// interval after its last poll began, or now for a binding never polled.
func (s *Stream) nextDue() (*Binding, time.Time) {
	var first *Binding
	var due time.Time
	for _, b := range s.source.bindings {
		at := time.Now()
		if pos := s.positions[b.StateKey]; pos != nil {
			at = time.UnixMilli(pos.StartMillis).Add(b.Interval)
		}
		if first == nil || at.Before(due) {
			first, due = b, at
		}
	}
	return first, due
}

// pollOnce polls b and delivers its documents and the Commit that ends them.
func (s *Stream) pollOnce(ctx context.Context, b *Binding) error {
	changed, err := s.source.redescribe(ctx, b)
	if err != nil {
		return err
	}
	if changed {
		if err := s.add(ctx, &sqlcapture.SchemaChange{Stream: b.Stream}); err != nil {
			return err
		}
	}
	pos, err := s.poller.poll(ctx, b, s.positions[b.StateKey], func(op byte, doc []byte) error {
		return s.change(ctx, b.Stream, op, doc)
	})
	if err != nil {
		return err
	}
	positions := maps.Clone(s.positions)
	positions[b.StateKey] = pos
	s.positions = positions
	return s.add(ctx, &sqlcapture.Commit{Cursor: encodePositions(positions)})
}

// change appends a document to the batch being filled, sending the batch
// once it is full.
func (s *Stream) change(ctx context.Context, stream sqlcapture.StreamID, op byte, doc []byte) error {
	bt := s.current()
	s.offs = append(s.offs, len(bt.Arena))
	bt.Arena = append(bt.Arena, doc...)
	bt.Changes = append(bt.Changes, sqlcapture.Change{Stream: stream, Op: sqlcapture.Op(op)})
	if len(bt.Changes) >= batchChanges || len(bt.Arena) >= batchBytes {
		return s.send(ctx, nil)
	}
	return nil
}

// add sends the batch being filled with ev as its last event.
func (s *Stream) add(ctx context.Context, ev sqlcapture.Event) error {
	s.current()
	return s.send(ctx, ev)
}

func (s *Stream) current() *sqlcapture.Batch {
	if s.batch == nil {
		select {
		case s.batch = <-s.free:
		default:
			s.batch = &sqlcapture.Batch{}
		}
		s.offs = s.offs[:0]
	}
	return s.batch
}

// send completes the batch's events, documents pointing into its arena
// only now that the arena has stopped growing, and hands it to the engine.
func (s *Stream) send(ctx context.Context, last sqlcapture.Event) error {
	bt := s.batch
	s.offs = append(s.offs, len(bt.Arena))
	for i := range bt.Changes {
		bt.Changes[i].Doc = bt.Arena[s.offs[i]:s.offs[i+1]]
		bt.Events = append(bt.Events, &bt.Changes[i])
	}
	if last != nil {
		bt.Events = append(bt.Events, last)
	}
	s.batch = nil
	select {
	case s.events <- bt:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Events implements sqlcapture.ReplicationStream.
func (s *Stream) Events() <-chan *sqlcapture.Batch { return s.events }

// Release implements sqlcapture.ReplicationStream.
func (s *Stream) Release(b *sqlcapture.Batch) {
	b.Reset()
	select {
	case s.free <- b:
	default:
	}
}

// Err implements sqlcapture.ReplicationStream.
func (s *Stream) Err() error { return s.err }

// Acknowledge implements sqlcapture.ReplicationStream. A poll holds nothing
// on the server, so there is nothing to release: the checkpointed cursor
// alone says where polling resumes.
func (s *Stream) Acknowledge(context.Context, string) error { return nil }

// Close implements sqlcapture.ReplicationStream: it stops polling, ending
// a poll in progress, whose transaction is then rolled back.
func (s *Stream) Close(ctx context.Context) error {
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return errors.New("the poll in progress did not end")
	}
}
