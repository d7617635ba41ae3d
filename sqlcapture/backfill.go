package sqlcapture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// backfilling reports whether a binding still needs its backfill.
func (c *capture) backfilling() bool {
	return slices.ContainsFunc(c.bindings, func(b *binding) bool { return b.state.Mode == ModeBackfill })
}

// backfillRound reads the next chunk of up to Options.BackfillConnections
// backfill parts at once (see planRound), then drains the change stream up
// to a freshly written watermark, emitting the concurrent changes of rows at
// or below each part's new scan position after the chunks, so that the
// checkpoint that follows holds each row's state as of the watermark.
//
// Reading several chunks before one fence keeps the fence's reasoning: each
// chunk's snapshot sees every transaction the stream delivered before the
// round (the Database promises that of every chunk), the stream is not
// consumed while they are read, and the fence then emits every change after
// the cursor to a row any of them covered, in commit order, after all their
// rows. Which snapshot read a row does not matter: each is at or after the
// cursor, and the changes replayed on top of it bring the row to its state
// at the watermark.
func (c *capture) backfillRound(ctx context.Context) error {
	if c.pendingCommit {
		if err := c.checkpoint(); err != nil {
			return err
		}
	}
	parts, err := c.planRound(ctx)
	if err != nil {
		return err
	}
	chunks, err := c.scanParts(ctx, parts)
	if err != nil {
		return err
	}
	for _, ch := range chunks {
		c.advance(ch)
	}
	if err := c.fence(ctx, parts); err != nil {
		return err
	}
	return c.checkpoint()
}

// part is what one chunk of a round reads: a binding's unsplit backfill
// (rng -1) or one range of a split one. offset numbers its rows.
type part struct {
	b      *binding
	rng    int
	offset int64
}

// bounds returns the position the part's next chunk starts after and the
// last position it may read (nil: no bound).
func (p part) bounds() (after, until []byte) {
	st := &p.b.state
	if p.rng < 0 {
		return st.Scanned, nil
	}
	r := st.Ranges[p.rng]
	after = r.Scanned
	if after == nil && p.rng > 0 {
		after = st.Ranges[p.rng-1].End
	}
	return after, r.End
}

// planRound picks the parts read in the next round, in binding order: the
// first bindings still backfilling, each range of a split one a part, up to
// Options.BackfillConnections parts (one if the Database cannot read
// ranges). A binding reached with connections to spare for the first time
// in this session is first split (see split). Rows are numbered as if each
// part's chunk were full, so that their numbers never collide.
func (c *capture) planRound(ctx context.Context) ([]part, error) {
	conns := 1
	rdb, ranged := c.db.(RangeDatabase)
	if ranged {
		conns = c.opts.BackfillConnections
	}
	var parts []part
	for _, b := range c.bindings {
		if len(parts) >= conns {
			break
		}
		if b.state.Mode != ModeBackfill {
			continue
		}
		if !ranged && len(b.state.Ranges) > 0 {
			return nil, fmt.Errorf("the checkpoint splits the backfill of table %s into ranges, which this database cannot read: %s", b.Stream, c.opts.RebackfillTable)
		}
		if conns > 1 && !b.splitTried && len(b.state.Ranges) == 0 {
			if err := c.split(ctx, rdb, b, conns); err != nil {
				return nil, err
			}
		}
		offset := b.state.Backfilled
		if len(b.state.Ranges) == 0 {
			parts = append(parts, part{b: b, rng: -1, offset: offset})
			continue
		}
		for i, r := range b.state.Ranges {
			if r.Done || len(parts) >= conns {
				continue
			}
			parts = append(parts, part{b: b, rng: i, offset: offset})
			offset += int64(c.opts.ChunkSize)
		}
	}
	return parts, nil
}

// split divides b's remaining backfill into up to n ranges of about equal
// size, as the Database proposes, but not into parts smaller than a chunk
// by the table's estimate.
func (c *capture) split(ctx context.Context, db RangeDatabase, b *binding, n int) error {
	if b.EstimatedRows > 0 {
		left := max(b.EstimatedRows-b.state.Backfilled, 0)
		n = min(n, int((left+int64(c.opts.ChunkSize)-1)/int64(c.opts.ChunkSize)))
	}
	if n < 2 {
		b.splitTried = true
		return nil
	}
	bounds, err := db.SplitStream(ctx, b.Stream, b.state.Scanned, n)
	if err != nil {
		// A transient failure is retried with the round.
		return fmt.Errorf("splitting the backfill of table %s into ranges: %w", b.Stream, err)
	}
	b.splitTried = true
	prev := b.state.Scanned
	for i, e := range bounds {
		if e == nil || (prev != nil && string(e) <= string(prev)) || i >= n-1 {
			c.log.WithField("table", b.Stream.String()).Warn("the database proposed backfill ranges out of order; the table is backfilled as one range")
			return nil
		}
		prev = e
	}
	if len(bounds) == 0 {
		return nil
	}
	ranges := make([]KeyRange, 0, len(bounds)+1)
	for _, e := range bounds {
		ranges = append(ranges, KeyRange{End: slices.Clone(e)})
	}
	ranges = append(ranges, KeyRange{})
	ranges[0].Scanned = b.state.Scanned
	b.state.Ranges, b.state.Scanned = ranges, nil
	b.split = true
	c.dirty[b.StateKey] = true
	c.log.WithFields(logrus.Fields{"table": b.Stream.String(), "ranges": len(ranges)}).Info("backfilling the table in ranges read at once")
	return nil
}

// chunk is one part's chunk as it is read: n rows emitted so far, the last
// one's key, and once read the position after which the part goes on, or
// that it is done.
type chunk struct {
	part
	n    int
	last []byte
	next []byte
	done bool
	err  error
	// shared: other chunks emit at the same time, so emitting takes
	// emitMu (a chunk read alone, the common case, does without).
	shared bool
}

// scanParts reads one chunk of each part, at once over a connection each.
//
// A keyed chunk that fails transiently after emitting some rows resumes,
// after reconnecting, with the rows after the last one emitted, under a new
// snapshot: the fence that follows emits every change after the cursor of
// the rows up to the chunk's end, whichever snapshot read them. A chunk of a
// table without a key cannot resume without emitting rows twice, so its
// failure ends the capture, which restarts from its last checkpoint. After a
// failure that reconnecting cannot cure, the other chunks are cancelled and
// the capture ends.
func (c *capture) scanParts(ctx context.Context, parts []part) ([]*chunk, error) {
	chunks := make([]*chunk, len(parts))
	for i, p := range parts {
		chunks[i] = &chunk{part: p}
	}
	if len(chunks) == 1 {
		return chunks, c.scanRetrying(ctx, chunks[0])
	}
	scanCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, ch := range chunks {
		ch.shared = true
		wg.Go(func() {
			ch.err = c.scanAttempt(scanCtx, i, ch)
			if ch.err != nil && !IsTransient(ch.err) {
				cancel()
			}
		})
	}
	wg.Wait()
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var failed []*chunk
	var fatal error
	for _, ch := range chunks {
		switch {
		case ch.err == nil:
		case IsTransient(ch.err):
			if err := c.resumable(ctx, ch, ch.err); err != nil {
				return nil, err
			}
			failed = append(failed, ch)
		case fatal == nil || errors.Is(fatal, context.Canceled):
			// The first failure says why; the chunks it cancelled only
			// that they were.
			fatal = ch.err
		}
	}
	if fatal != nil {
		return nil, fatal
	}
	if len(failed) == 0 {
		return chunks, nil
	}
	if err := c.recover(ctx, failed[0].err); err != nil {
		return nil, err
	}
	for _, ch := range failed {
		ch.shared = false // read one after another from here on
		if c.chunkFull(ch) {
			continue
		}
		if err := c.scanRetrying(ctx, ch); err != nil {
			return nil, err
		}
	}
	return chunks, nil
}

// scanRetrying reads a chunk on the first connection, reconnecting after
// transient failures and resuming after the last row emitted.
func (c *capture) scanRetrying(ctx context.Context, ch *chunk) error {
	for {
		err := c.scanAttempt(ctx, 0, ch)
		if err == nil {
			return nil
		}
		if err := c.resumable(ctx, ch, err); err != nil {
			return err
		}
		if err := c.recover(ctx, err); err != nil {
			return err
		}
		if c.chunkFull(ch) {
			return nil
		}
		c.log.WithFields(logrus.Fields{"table": ch.b.Stream.String(), "rows": ch.n}).Info("resuming the backfill chunk after the last row it emitted")
	}
}

// chunkFull reports whether a chunk that failed had emitted all its rows:
// it then goes on from the last one at the next round.
func (c *capture) chunkFull(ch *chunk) bool {
	if ch.n < c.opts.ChunkSize {
		return false
	}
	ch.next, ch.done = slices.Clone(ch.last), false
	return true
}

// resumable returns err unless the chunk it failed can resume after a
// reconnection.
func (c *capture) resumable(ctx context.Context, ch *chunk, err error) error {
	if !IsTransient(err) || ctx.Err() != nil {
		return err
	}
	if ch.n > 0 && len(ch.b.KeyColumns) == 0 {
		return fmt.Errorf("%w; the chunk had emitted %d rows of a table without a key, whose read cannot be resumed without emitting rows twice, so the capture ends here and restarts from its last checkpoint", err, ch.n)
	}
	return nil
}

// scanAttempt reads the rest of a chunk over connection conn: up to the
// chunk size, after the last row it emitted if any.
func (c *capture) scanAttempt(ctx context.Context, conn int, ch *chunk) error {
	after, until := ch.bounds()
	if ch.n > 0 {
		after = slices.Clone(ch.last)
	}
	emit := func(r Row) error {
		if ch.shared {
			c.emitMu.Lock()
			defer c.emitMu.Unlock()
		}
		ch.n++
		c.docs++
		ch.last = append(ch.last[:0], r.Key...)
		return c.out.Captured(ch.b.Index, r.Doc)
	}
	offset, limit := ch.offset+int64(ch.n), c.opts.ChunkSize-ch.n
	var err error
	if rdb, ok := c.db.(RangeDatabase); ok {
		ch.next, ch.done, err = rdb.ScanRange(ctx, conn, ch.b.Stream, after, until, offset, limit, emit)
	} else {
		ch.next, ch.done, err = c.db.ScanChunk(ctx, ch.b.Stream, after, offset, limit, emit)
	}
	if err != nil {
		ch.next, ch.done = nil, false
		return fmt.Errorf("backfilling table %s: %w", ch.b.Stream, err)
	}
	return nil
}

// advance records a chunk read in its binding's state.
func (c *capture) advance(ch *chunk) {
	b := ch.b
	b.state.Backfilled += int64(ch.n)
	complete := ch.done
	if ch.rng >= 0 {
		r := &b.state.Ranges[ch.rng]
		if ch.done {
			r.Done = true
		} else {
			r.Scanned = slices.Clone(ch.next)
		}
		complete = !slices.ContainsFunc(b.state.Ranges, func(r KeyRange) bool { return !r.Done })
	} else if !ch.done {
		b.state.Scanned = slices.Clone(ch.next)
	}
	if complete {
		// The last chunk read everything beyond the old position, so from
		// now on every change of the table is emitted, including those
		// racing this chunk up to the fence.
		b.state.Mode = ModeActive
		b.state.Scanned = nil
		b.state.Ranges = nil
		c.log.WithFields(logrus.Fields{"table": b.Stream.String(), "rows": b.state.Backfilled}).Info("backfill complete")
	} else {
		c.log.WithFields(logrus.Fields{"table": b.Stream.String(), "rows": b.state.Backfilled}).Debug("backfill chunk")
	}
	c.dirty[b.StateKey] = true
	c.progress.backfilled(b.Stream, b.state.Backfilled, complete)
}

// fence writes a watermark and processes the change stream up to its
// commit, which emits the changes that raced the chunks just read. After a
// transient failure it reconnects, which restarts the stream at the cursor
// (the chunks' rows are already out), and fences again with a new
// watermark: the old one, if it was written, passes by unrecognized.
func (c *capture) fence(ctx context.Context, parts []part) error {
	var tables []string
	for _, p := range parts {
		if name := p.b.Stream.String(); !slices.Contains(tables, name) {
			tables = append(tables, name)
		}
	}
	what := strings.Join(tables, ", ")
	for {
		err := c.fenceOnce(ctx, what)
		if err == nil || !IsTransient(err) || ctx.Err() != nil {
			return err
		}
		if err := c.recover(ctx, err); err != nil {
			return err
		}
	}
}

func (c *capture) fenceOnce(ctx context.Context, tables string) error {
	id, err := newFenceID()
	if err != nil {
		return err
	}
	if err := c.db.WriteWatermark(ctx, id); err != nil {
		return fmt.Errorf("writing the watermark fence for table %s: %w", tables, err)
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
