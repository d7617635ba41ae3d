package sqlcapture

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// checkpoint commits every document emitted so far, recording the stream
// cursor and the state of every binding that changed. Its merge patch has
// the shape of the State it patches; a null stream state deletes the entry of
// a binding no longer captured.
func (c *capture) checkpoint() error {
	patch := statePatch{Cursor: c.cursor}
	if len(c.dirty) > 0 || len(c.removed) > 0 {
		patch.Streams = make(map[string]*streamPatch, len(c.dirty)+len(c.removed))
		for _, b := range c.bindings {
			if c.dirty[b.StateKey] {
				st := b.state
				p := &streamPatch{StreamState: &st}
				if b.split {
					// Written even when empty, as null, which clears the
					// ranges of a backfill now complete.
					p.Ranges = &st.Ranges
				}
				patch.Streams[b.StateKey] = p
			}
		}
		for _, key := range c.removed {
			patch.Streams[key] = nil
		}
	}
	raw, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("encoding checkpoint: %w", err)
	}
	if err := c.out.Checkpoint(raw); err != nil {
		return err
	}
	c.unacked = append(c.unacked, c.cursor)
	if len(c.dirty) > 0 || c.cursor != c.outageCursor {
		c.progressed()
	}
	clear(c.dirty)
	c.removed = nil
	c.pendingCommit = false
	c.docs = 0
	return nil
}

// statePatch is a checkpoint's merge patch: a State whose stream states
// may write their ranges as null.
type statePatch struct {
	Cursor  string                  `json:"cursor,omitempty"`
	Streams map[string]*streamPatch `json:"streams,omitempty"`
}

// streamPatch is a StreamState whose Ranges, when set, are written even if
// empty (the outer field hides the embedded one's).
type streamPatch struct {
	*StreamState
	Ranges *[]KeyRange `json:"ranges,omitempty"`
}

// acknowledge releases the change stream up to the newest of the n oldest
// unacknowledged checkpoints.
func (c *capture) acknowledge(ctx context.Context, n int) error {
	if n == 0 {
		return nil
	}
	if n > len(c.unacked) {
		return fmt.Errorf("the runtime acknowledged %d checkpoints but only %d were outstanding", n, len(c.unacked))
	}
	cursor := c.unacked[n-1]
	c.unacked = slices.Delete(c.unacked, 0, n)
	if cursor == "" || cursor == c.acked {
		return nil
	}
	c.acked = cursor
	return c.stream.Acknowledge(ctx, cursor)
}

// Acknowledgements collects the runtime's acknowledgements of checkpoints.
// The request reader adds to it without ever blocking, so the runtime's
// acknowledgements are drained even while the engine is busy with a chunk.
type Acknowledgements struct {
	mu    sync.Mutex
	n     int
	ready chan struct{}
}

// NewAcknowledgements returns an empty collector.
func NewAcknowledgements() *Acknowledgements {
	return &Acknowledgements{ready: make(chan struct{}, 1)}
}

// Add records that n more checkpoints are durably committed. Zero counts as
// one, as older runtimes sent it.
func (a *Acknowledgements) Add(n uint32) {
	if n == 0 {
		n = 1
	}
	a.mu.Lock()
	a.n += int(n)
	a.mu.Unlock()
	select {
	case a.ready <- struct{}{}:
	default:
	}
}

func (a *Acknowledgements) take() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.n
	a.n = 0
	return n
}
