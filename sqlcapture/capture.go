package sqlcapture

import (
	"context"
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
	// EstimatedRows is the table's size as the database estimates it (0:
	// unknown), which backfill progress is measured against.
	EstimatedRows int64
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
	// BackfillConnections is how many backfill chunks are read at once, each
	// over its own connection, when the Database is a RangeDatabase: chunks
	// of several tables, or of ranges of one table split by SplitStream.
	// Default 1: one chunk at a time.
	BackfillConnections int
	// FenceTimeout bounds how long a watermark fence may wait without the
	// change stream committing anything.
	FenceTimeout time.Duration
	// CoalesceDocs is how many documents streaming may accumulate across
	// already-received commits before it must take a checkpoint.
	CoalesceDocs int
	// RetryTimeout bounds how long the capture keeps reconnecting after a
	// transient failure before it gives up with the failure's error.
	RetryTimeout time.Duration
	// RetryDelay is the wait before the first reconnection; each further
	// one waits twice as long, up to 10s.
	RetryDelay time.Duration
	Logger     logrus.FieldLogger
	// Progress is told how far the capture has come every
	// ProgressInterval (default 30s); nil logs it (LogProgress).
	Progress         ProgressObserver
	ProgressInterval time.Duration
	// RebackfillTable tells a user how to backfill a table again, in the
	// words of whoever runs the capture; errors that need it end with it.
	RebackfillTable string
}

func (o *Options) setDefaults() {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 4096
	}
	if o.BackfillConnections <= 0 {
		o.BackfillConnections = 1
	}
	if o.FenceTimeout <= 0 {
		o.FenceTimeout = 5 * time.Minute
	}
	if o.CoalesceDocs <= 0 {
		o.CoalesceDocs = 4096
	}
	if o.RetryTimeout <= 0 {
		o.RetryTimeout = DefaultRetryTimeout
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.Progress == nil {
		o.Progress = LogProgress(o.Logger)
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = 30 * time.Second
	}
	if o.RebackfillTable == "" {
		o.RebackfillTable = "bump the binding's backfill counter to backfill it again"
	}
}

// DefaultRetryTimeout is Options.RetryTimeout's default.
const DefaultRetryTimeout = 5 * time.Minute

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
		acked:    state.Cursor, // the runtime committed the state it resumes from
		dirty:    make(map[string]bool),
	}
	if err := c.reconcile(bindings, state); err != nil {
		return err
	}
	c.progress = newProgressTracker(c.bindings, time.Now())
	reportCtx, stopReports := context.WithCancel(ctx)
	defer stopReports()
	go c.progress.report(reportCtx, opts.ProgressInterval, opts.Progress)
	return c.run(ctx)
}

// binding is a Binding with its stream state as of the output so far.
type binding struct {
	Binding
	state StreamState
	// split: the backfill was split into ranges (now or in the state it
	// resumed from), so checkpoints always write its ranges; splitTried:
	// this session asked to split it, which it does once.
	split, splitTried bool
}

// capture is one capture session. Its methods are spread over files named
// for their part: backfill.go scans chunks and fences them, stream.go applies
// the change stream, checkpoint.go emits checkpoints and takes acks.
type capture struct {
	db   Database
	out  Output
	acks *Acknowledgements
	opts Options
	log  logrus.FieldLogger

	bindings []*binding
	byStream map[StreamID]*binding
	stream   ReplicationStream
	progress *progressTracker

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
	// txnChanges counts the Change events of the open transaction handled
	// so far, and replaySkip those still to be skipped as they are delivered
	// again by a stream restarted at the cursor.
	txnChanges, replaySkip int
	// pendingCommit: a commit was processed but not yet checkpointed.
	pendingCommit bool
	// docs counts documents emitted since the last checkpoint.
	docs int
	// fenceSeen: the awaited watermark appeared; its commit ends the fence.
	fenceSeen bool
	// emitMu serializes the output of chunks read at once.
	emitMu sync.Mutex
	// batch is the batch being processed, and next its next event: a fence
	// can end in the middle of a batch.
	batch *Batch
	next  int

	// outageBegin is when the current run of transient failures began (zero
	// when there is none), and attempts how many reconnections it has made.
	outageBegin  time.Time
	outageCursor string
	attempts     int
	// started: the first checkpoint was taken.
	started bool
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
			return fmt.Errorf("the key of table %s changed from %v to %v during its backfill: %s", b.Stream, prev.KeyColumns, b.KeyColumns, c.opts.RebackfillTable)
		case ok:
			nb.state = *prev
			// The engine advances ranges in place; the state it resumes
			// from is the caller's.
			nb.state.Ranges = slices.Clone(prev.Ranges)
			nb.split = len(prev.Ranges) > 0
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

// run is the capture's loop: it reports every binding's schema and takes a
// first checkpoint, recording new and removed bindings, then backfills one
// chunk at a time while a table needs it, and otherwise streams changes.
// After a transient failure it reconnects (recover) and carries on.
func (c *capture) run(ctx context.Context) error {
	defer func() {
		if err := c.closeStream(ctx); err != nil {
			c.log.WithError(err).Warn("closing the replication stream")
		}
	}()
	var err error
	for {
		if err != nil {
			if !IsTransient(err) {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err = c.recover(ctx, err); err != nil {
				return err
			}
		}
		switch {
		case !c.started:
			err = c.start(ctx)
		case c.backfilling():
			err = c.backfillRound(ctx)
		default:
			err = c.streamEvents(ctx, "")
		}
	}
}

// start opens the change stream (unless recover already did), reports
// every binding's schema and takes the first checkpoint.
func (c *capture) start(ctx context.Context) error {
	if c.stream == nil {
		stream, err := c.db.StartReplication(ctx, c.cursor, c.acked)
		if err != nil {
			return err
		}
		c.stream = stream
	}
	for _, b := range c.bindings {
		if err := c.describe(ctx, b); err != nil {
			return err
		}
	}
	if err := c.checkpoint(); err != nil {
		return err
	}
	c.started = true
	return nil
}

// describe emits the binding's current schema.
func (c *capture) describe(ctx context.Context, b *binding) error {
	schema, err := c.db.DescribeStream(ctx, b.Stream)
	if err != nil {
		return fmt.Errorf("describing table %s: %w", b.Stream, err)
	}
	return c.out.SourcedSchema(b.Index, schema)
}

// IsCancellation reports whether err only says that the capture was asked to stop.
func IsCancellation(err error) bool {
	return errors.Is(err, context.Canceled)
}
