package sqlcapture

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// streamEvents processes the change stream. With an empty fence it runs
// until ctx ends, taking a checkpoint after commits; otherwise it returns
// once the watermark fence has been committed, taking no checkpoint.
func (c *capture) streamEvents(ctx context.Context, fence string) error {
	events := c.stream.Events()
	var timeout <-chan time.Time
	var timer *time.Timer
	if fence != "" {
		timer = time.NewTimer(c.opts.FenceTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	for {
		for c.batch != nil && c.next < len(c.batch.Events) {
			ev := c.batch.Events[c.next]
			c.next++
			reached, err := c.handle(ctx, ev, fence)
			if err != nil {
				return err
			}
			if reached {
				return nil
			}
		}
		if c.batch != nil {
			c.stream.Release(c.batch)
			c.batch = nil
		}
		if fence == "" && c.pendingCommit && !c.inTxn && len(events) == 0 {
			if err := c.checkpoint(); err != nil {
				return err
			}
		}
		select {
		case b, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := c.stream.Err(); err != nil {
					return err
				}
				return ErrStreamEnded
			}
			c.batch, c.next = b, 0
			if timer != nil {
				// The stream is moving towards the fence: a huge transaction
				// ahead of it may take long, but is no reason to give up.
				timer.Reset(c.opts.FenceTimeout)
			}
		case <-c.acks.ready:
			if err := c.acknowledge(ctx, c.acks.take()); err != nil {
				return err
			}
		case <-timeout:
			return fmt.Errorf("the watermark fence was not seen in the change stream, which delivered nothing for %s: check that the watermarks table is in the publication", c.opts.FenceTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handle applies one event. It reports whether the event was the commit
// that completed the awaited fence.
func (c *capture) handle(ctx context.Context, ev Event, fence string) (reached bool, err error) {
	switch e := ev.(type) {
	case *Change:
		if c.replaySkip > 0 {
			// Handled before the stream was restarted (see recover).
			c.replaySkip--
			return false, nil
		}
		c.txnChanges++
		return false, c.applyChange(e, fence)
	case *Watermark:
		if fence != "" && e.ID == fence {
			c.fenceSeen = true
		}
	case *Commit:
		if c.replaySkip > 0 {
			return false, fmt.Errorf("the change stream delivered a transaction again with fewer changes than before it was restarted (%d missing): it cannot be resumed", c.replaySkip)
		}
		c.inTxn = false
		c.txnChanges = 0
		c.cursor = e.Cursor
		c.pendingCommit = true
		c.progress.commit(e)
		if c.fenceSeen {
			c.fenceSeen = false
			return true, nil
		}
		return false, nil
	case *Keepalive:
		if !c.inTxn && e.Cursor != c.cursor {
			c.cursor = e.Cursor
			c.pendingCommit = true
			c.progress.keepalive(e)
		}
	case *SchemaChange:
		if b := c.byStream[e.Stream]; b != nil {
			c.log.WithField("table", e.Stream.String()).Info("the table's columns changed; reporting its new schema")
			if err := c.describe(ctx, b); err != nil {
				return false, err
			}
		}
	case *Notice:
		c.log.WithField("table", e.Stream.String()).Warn(e.Message)
	default:
		return false, fmt.Errorf("unexpected change stream event %T", ev)
	}
	return false, nil
}

// applyChange emits a change of a captured table unless a later backfill
// chunk will read its row. Outside a fence, at the first change of a
// transaction, it first takes the checkpoint a processed commit is waiting
// for once Options.CoalesceDocs documents have accumulated. Never later in
// the transaction: the checkpoint's cursor is the previous commit, so it
// must not hold any of this transaction's documents, which a capture
// resuming from it receives again.
func (c *capture) applyChange(e *Change, fence string) error {
	if fence == "" && c.pendingCommit && !c.inTxn && c.docs >= c.opts.CoalesceDocs {
		if err := c.checkpoint(); err != nil {
			return err
		}
	}
	c.inTxn = true
	b := c.byStream[e.Stream]
	if b == nil || !b.emits(e.Key) {
		return nil
	}
	c.docs++
	return c.out.Captured(b.Index, e.Doc)
}

// emits reports whether a change of the row with key belongs in the output:
// always once the table is backfilled; while it is backfilling, only for
// rows the backfill has already read, since a later chunk reads the others
// as they are then. A table without a key cannot tell, so its changes are
// all emitted. In a split backfill the row's range decides.
func (b *binding) emits(key []byte) bool {
	if b.state.Mode == ModeActive || len(b.KeyColumns) == 0 {
		return true
	}
	for _, r := range b.state.Ranges {
		if r.End == nil || bytes.Compare(key, r.End) <= 0 {
			return r.Done || (r.Scanned != nil && bytes.Compare(key, r.Scanned) <= 0)
		}
	}
	return b.state.Scanned != nil && bytes.Compare(key, b.state.Scanned) <= 0
}
