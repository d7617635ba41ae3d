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
//
// A keyed chunk that fails transiently after emitting some rows resumes,
// after reconnecting, with the rows after the last one emitted, under a new
// snapshot: the fence that follows the chunk emits every change after the
// cursor of the rows up to the chunk's end, whichever snapshot read them. A
// chunk of a table without a key cannot resume without emitting rows twice,
// so its failure ends the capture, which restarts from its last checkpoint.
func (c *capture) scanChunk(ctx context.Context, b *binding) error {
	after, offset, limit := b.state.Scanned, b.state.Backfilled, c.opts.ChunkSize
	n := 0
	var last []byte
	emit := func(r Row) error {
		n++
		c.docs++
		last = append(last[:0], r.Key...)
		return c.out.Captured(b.Index, r.Doc)
	}
	var next []byte
	var done bool
	for {
		var err error
		next, done, err = c.db.ScanChunk(ctx, b.Stream, after, offset+int64(n), limit-n, emit)
		if err == nil {
			break
		}
		err = fmt.Errorf("backfilling table %s: %w", b.Stream, err)
		if !IsTransient(err) || ctx.Err() != nil {
			return err
		}
		if n > 0 && len(b.KeyColumns) == 0 {
			return fmt.Errorf("%v; the chunk had emitted %d rows of a table without a key, whose read cannot be resumed without emitting rows twice, so the capture ends here and restarts from its last checkpoint", err, n)
		}
		if n > 0 {
			after = slices.Clone(last)
		}
		if err := c.recover(ctx, err); err != nil {
			return err
		}
		if n >= limit {
			// Every row of the chunk is out: the next chunk goes on from
			// the last one.
			next, done = after, false
			break
		}
		c.log.WithFields(logrus.Fields{"table": b.Stream.String(), "rows": n}).Info("resuming the backfill chunk after the last row it emitted")
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
// commit, which emits the changes that raced the chunk just scanned. After a
// transient failure it reconnects, which restarts the stream at the cursor
// (the chunk's rows are already out), and fences again with a new
// watermark: the old one, if it was written, passes by unrecognized.
func (c *capture) fence(ctx context.Context, b *binding) error {
	for {
		err := c.fenceOnce(ctx, b)
		if err == nil || !IsTransient(err) || ctx.Err() != nil {
			return err
		}
		if err := c.recover(ctx, err); err != nil {
			return err
		}
	}
}

func (c *capture) fenceOnce(ctx context.Context, b *binding) error {
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
