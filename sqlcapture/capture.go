package sqlcapture

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Binding is one captured table.
type Binding struct {
	// Index is the binding's position in the open request; documents are
	// emitted under it.
	Index    uint32
	StateKey string
	Stream   StreamID
	// KeyColumns are the columns whose encoded values form the row key.
	KeyColumns []string
	// SkipBackfill makes a new binding stream its changes without a backfill.
	SkipBackfill bool
}

// Output receives what the capture emits, in order. A checkpoint commits
// every document (and schema) emitted since the previous one.
type Output interface {
	Captured(binding uint32, doc []byte) error
	// SourcedSchema reports the schema of a binding's documents as its
	// table now is.
	SourcedSchema(binding uint32, schema []byte) error
	Checkpoint(mergePatch []byte) error
}

// Options tune a capture.
type Options struct {
	// ChunkSize is the number of rows a backfill chunk reads.
	ChunkSize int
	// FenceTimeout bounds how long a watermark fence may wait without the
	// change stream committing anything.
	FenceTimeout time.Duration
	// CoalesceDocs is how many documents streaming may accumulate across
	// already-received commits before it must take a checkpoint.
	CoalesceDocs int
	Logger       logrus.FieldLogger
}

func (o *Options) setDefaults() {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 4096
	}
	if o.FenceTimeout <= 0 {
		o.FenceTimeout = 5 * time.Minute
	}
	if o.CoalesceDocs <= 0 {
		o.CoalesceDocs = 4096
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
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

// Run captures bindings from db until ctx ends or an error occurs. It
// resumes from state, emits documents and checkpoints to out, and releases
// the database's change stream only up to checkpoints acknowledged through
// acks.
func Run(ctx context.Context, db Database, bindings []Binding, state State, out Output, acks *Acknowledgements, opts Options) error {
	opts.setDefaults()
	c := &capture{
		db:       db,
		out:      out,
		acks:     acks,
		opts:     opts,
		log:      opts.Logger,
		byStream: make(map[StreamID]*binding, len(bindings)),
		cursor:   state.Cursor,
		dirty:    make(map[string]bool),
	}
	if err := c.reconcile(bindings, state); err != nil {
		return err
	}
	return c.run(ctx)
}

type binding struct {
	Binding
	state StreamState
}

// emits reports whether a change of the row with key belongs in the output:
// always once the table is backfilled; while it is backfilling, only for
// rows the backfill has already read, since a later chunk reads the others
// as they are then. A table without a key cannot tell, so its changes are
// all emitted.
func (b *binding) emits(key []byte) bool {
	return b.state.Mode == ModeActive || len(b.KeyColumns) == 0 ||
		(b.state.Scanned != nil && bytes.Compare(key, b.state.Scanned) <= 0)
}

type capture struct {
	db   Database
	out  Output
	acks *Acknowledgements
	opts Options
	log  logrus.FieldLogger

	bindings []*binding
	byStream map[StreamID]*binding
	stream   ReplicationStream

	// cursor is the stream position after the last processed commit.
	cursor string
	// removed holds state keys of bindings no longer captured, to be
	// patched away by the next checkpoint.
	removed []string
	// dirty holds state keys whose stream state changed since the last checkpoint.
	dirty map[string]bool

	// unacked holds the cursor of each emitted, unacknowledged checkpoint.
	unacked []string
	acked   string

	inTxn bool
	// pendingCommit: a commit was processed but not yet checkpointed.
	pendingCommit bool
	// docs counts documents emitted since the last checkpoint.
	docs int
	// fenceSeen: the awaited watermark appeared; its commit ends the fence.
	fenceSeen bool
	// batch is the batch being processed, and next its next event: a fence
	// can end in the middle of a batch.
	batch *Batch
	next  int
}

// reconcile builds each binding's starting state from the checkpointed one.
func (c *capture) reconcile(bindings []Binding, state State) error {
	for _, b := range bindings {
		if _, dup := c.byStream[b.Stream]; dup {
			return fmt.Errorf("table %s is bound twice", b.Stream)
		}
		nb := &binding{Binding: b}
		prev, ok := state.Streams[b.StateKey]
		switch {
		case ok && prev.Mode == ModeBackfill && !slices.Equal(prev.KeyColumns, b.KeyColumns):
			return fmt.Errorf("the key of table %s changed from %v to %v during its backfill: bump the binding's backfill counter to backfill it again", b.Stream, prev.KeyColumns, b.KeyColumns)
		case ok:
			nb.state = *prev
		case b.SkipBackfill:
			nb.state = StreamState{Mode: ModeActive, KeyColumns: b.KeyColumns}
			c.dirty[b.StateKey] = true
		default:
			nb.state = StreamState{Mode: ModeBackfill, KeyColumns: b.KeyColumns}
			c.dirty[b.StateKey] = true
		}
		c.bindings = append(c.bindings, nb)
		c.byStream[b.Stream] = nb
	}
	for key := range state.Streams {
		if !slices.ContainsFunc(bindings, func(b Binding) bool { return b.StateKey == key }) {
			c.removed = append(c.removed, key)
		}
	}
	slices.Sort(c.removed)
	return nil
}

func (c *capture) run(ctx context.Context) error {
	stream, err := c.db.StartReplication(ctx, c.cursor)
	if err != nil {
		return err
	}
	c.stream = stream
	defer func() {
		// Close confirms the last acknowledged position, so it must run even
		// when ctx is already cancelled.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := stream.Close(closeCtx); err != nil {
			c.log.WithError(err).Warn("closing the replication stream")
		}
	}()

	for _, b := range c.bindings {
		if err := c.describe(ctx, b); err != nil {
			return err
		}
	}
	if err := c.checkpoint(); err != nil {
		return err
	}
	for {
		if b := c.nextBackfill(); b != nil {
			if err := c.backfillChunk(ctx, b); err != nil {
				return err
			}
			continue
		}
		if err := c.streamEvents(ctx, ""); err != nil {
			return err
		}
	}
}

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

	id, err := newFenceID()
	if err != nil {
		return err
	}
	if err := c.db.WriteWatermark(ctx, id); err != nil {
		return fmt.Errorf("writing the watermark fence for table %s: %w", b.Stream, err)
	}
	if err := c.streamEvents(ctx, id); err != nil {
		return err
	}
	return c.checkpoint()
}

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
		if fence == "" && c.pendingCommit && c.docs >= c.opts.CoalesceDocs {
			if err := c.checkpoint(); err != nil {
				return false, err
			}
		}
		c.inTxn = true
		b := c.byStream[e.Stream]
		if b == nil {
			return false, nil
		}
		if b.emits(e.Key) {
			c.docs++
			if err := c.out.Captured(b.Index, e.Doc); err != nil {
				return false, err
			}
		}
	case *Watermark:
		if fence != "" && e.ID == fence {
			c.fenceSeen = true
		}
	case *Commit:
		c.inTxn = false
		c.cursor = e.Cursor
		c.pendingCommit = true
		if c.fenceSeen {
			c.fenceSeen = false
			return true, nil
		}
		return false, nil
	case *Keepalive:
		if !c.inTxn && e.Cursor != c.cursor {
			c.cursor = e.Cursor
			c.pendingCommit = true
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

// describe emits the binding's current schema.
func (c *capture) describe(ctx context.Context, b *binding) error {
	schema, err := c.db.DescribeStream(ctx, b.Stream)
	if err != nil {
		return fmt.Errorf("describing table %s: %w", b.Stream, err)
	}
	return c.out.SourcedSchema(b.Index, schema)
}

type checkpointPatch struct {
	Cursor  string                  `json:"cursor,omitempty"`
	Streams map[string]*StreamState `json:"streams,omitempty"`
}

// checkpoint commits every document emitted so far, recording the stream
// cursor and the state of every binding that changed.
func (c *capture) checkpoint() error {
	patch := checkpointPatch{Cursor: c.cursor}
	if len(c.dirty) > 0 || len(c.removed) > 0 {
		patch.Streams = make(map[string]*StreamState, len(c.dirty)+len(c.removed))
		for _, b := range c.bindings {
			if c.dirty[b.StateKey] {
				st := b.state
				patch.Streams[b.StateKey] = &st
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
	clear(c.dirty)
	c.removed = nil
	c.pendingCommit = false
	c.docs = 0
	return nil
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

func newFenceID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating a watermark id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// IsCancellation reports whether err only says that the capture was asked to stop.
func IsCancellation(err error) bool {
	return errors.Is(err, context.Canceled)
}
