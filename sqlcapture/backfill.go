package sqlcapture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/sirupsen/logrus"
)

// nextBackfill picks the binding whose backfill proceeds next: bindings are
// backfilled one at a time, in order.
func (c *capture) nextBackfill() *binding {
	for _, b := range c.bindings {
		if b.state.Mode == ModeBackfill {
			return b
		}
	}
	return nil
}

// backfillChunk emits the next chunk of b's rows and then drains the change
// stream up to a freshly written watermark, emitting the concurrent changes
// of rows at or below the new scan position after the chunk, so that the
// checkpoint that follows holds each row's state as of the watermark.
func (c *capture) backfillChunk(ctx context.Context, b *binding) error {
	if c.pendingCommit {
		if err := c.checkpoint(); err != nil {
			return err
		}
	}
	if err := c.scanChunk(ctx, b); err != nil {
		return err
	}
	if err := c.fence(ctx, b); err != nil {
		return err
	}
	return c.checkpoint()
}

// scanChunk emits b's next chunk of rows and advances its backfill state.
func (c *capture) scanChunk(ctx context.Context, b *binding) error {
	n := 0
	next, done, err := c.db.ScanChunk(ctx, b.Stream, b.state.Scanned, b.state.Backfilled, c.opts.ChunkSize, func(r Row) error {
		n++
		c.docs++
		return c.out.Captured(b.Index, r.Doc)
	})
	if err != nil {
		return fmt.Errorf("backfilling table %s: %w", b.Stream, err)
	}
	b.state.Backfilled += int64(n)
	if done {
		// The last chunk read everything beyond the old position, so from
		// now on every change of the table is emitted, including those
		// racing this chunk up to the fence.
		b.state.Mode = ModeActive
		b.state.Scanned = nil
		c.log.WithFields(logrus.Fields{"table": b.Stream.String(), "rows": b.state.Backfilled}).Info("backfill complete")
	} else {
		b.state.Scanned = slices.Clone(next)
		c.log.WithFields(logrus.Fields{"table": b.Stream.String(), "rows": b.state.Backfilled}).Debug("backfill chunk")
	}
	c.dirty[b.StateKey] = true
	c.progress.backfilled(b.Stream, b.state.Backfilled, done)
	return nil
}

// fence writes a watermark and processes the change stream up to its
// commit, which emits the changes that raced the chunk just scanned.
func (c *capture) fence(ctx context.Context, b *binding) error {
	id, err := newFenceID()
	if err != nil {
		return err
	}
	if err := c.db.WriteWatermark(ctx, id); err != nil {
		return fmt.Errorf("writing the watermark fence for table %s: %w", b.Stream, err)
	}
	return c.streamEvents(ctx, id)
}

func newFenceID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating a watermark id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
