// Package sqlcapture is a database-agnostic change-data-capture engine.
//
// It drives one source database through the capture lifecycle: each bound
// table is backfilled in chunks, in key order, while the database's change
// stream keeps flowing; the two are interleaved with watermark fences so that
// a document stream, reduced by key, reproduces the table at every
// checkpoint. Once a table is backfilled, its changes simply stream.
//
// The engine knows nothing about any particular database. A Database supplies
// the change stream, backfill chunks and fences; the engine decides what to
// emit, in which order, and when a checkpoint may be taken.
package sqlcapture

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Database is what the engine needs of a source database.
type Database interface {
	// StartReplication opens the change stream at cursor: the stream
	// delivers every transaction committed after it, again if need be. An
	// empty cursor means "from wherever the stream currently begins" (for
	// PostgreSQL: the slot's confirmed position). acknowledged, at or
	// before cursor, is the last position the capture's output has durably
	// committed: the stream may release what precedes it, and nothing after
	// it until Acknowledge says so.
	StartReplication(ctx context.Context, cursor, acknowledged string) (ReplicationStream, error)

	// Reconnect replaces the database's connections after a transient
	// failure (see Transient), so that the calls that follow use fresh ones.
	// Its own failures are transient when retrying may cure them.
	Reconnect(ctx context.Context) error

	// ScanChunk reads the next chunk of a table's rows, those positioned
	// after after (nil: from the beginning), calling emit for each, and
	// returns the position the next chunk starts after and whether the table
	// has no rows beyond this chunk. offset counts the rows of the table
	// backfilled before this chunk; documents may record it.
	//
	// A keyed table is read in key order, up to limit rows; positions are
	// row keys and next is the last row's key. The key order must be exactly
	// the order of the encoded keys (bytes.Compare): that is how the engine
	// decides whether a streamed change falls inside the backfilled range.
	// A table without a key may be read in physical order, in chunks of
	// about limit rows; its positions are opaque to the engine, which then
	// emits every change of the table, backfilled or not.
	//
	// The rows must reflect every change the replication stream has already
	// delivered: a database where a committed transaction can be durable in
	// the change stream before it is visible to new snapshots must wait or
	// retry until its snapshot covers everything delivered so far.
	ScanChunk(ctx context.Context, stream StreamID, after []byte, offset int64, limit int, emit func(Row) error) (next []byte, done bool, err error)

	// WriteWatermark makes a change that the replication stream will report
	// as a Watermark event carrying id, followed by its transaction's Commit.
	WriteWatermark(ctx context.Context, id string) error

	// Every method reports a failure that reconnecting may cure as
	// Transient; the engine then calls Reconnect and StartReplication again
	// and carries on where it was. Other errors end the capture.

	// DescribeStream returns the JSON Schema of a table's documents as the
	// table is now, and readies later chunks of it for its current columns.
	DescribeStream(ctx context.Context, stream StreamID) (json.RawMessage, error)
}

// RangeDatabase is a Database that can read several backfill chunks at
// once, each over its own connection, and split a table into ranges of
// positions for that. The engine reads up to Options.BackfillConnections
// chunks at a time when its Database is one.
type RangeDatabase interface {
	Database

	// SplitStream proposes up to n-1 positions, in increasing order and
	// all after after, that split the table's rows positioned after after
	// into parts of about equal size. It may propose fewer, or none, for a
	// table too small to be worth splitting. The positions are only a
	// proposal: a wrong guess makes the parts unequal, never loses rows.
	SplitStream(ctx context.Context, stream StreamID, after []byte, n int) ([][]byte, error)

	// ScanRange is ScanChunk over connection conn (0 <= conn <
	// Options.BackfillConnections), reading only rows positioned at or
	// before until (nil: no bound); done reports that none remain up to
	// it. Calls on different connections run concurrently, and each keeps
	// ScanChunk's promise about the change stream. ScanChunk is ScanRange on
	// connection 0 without a bound.
	ScanRange(ctx context.Context, conn int, stream StreamID, after, until []byte, offset int64, limit int, emit func(Row) error) (next []byte, done bool, err error)
}

// ReplicationStream is an open change stream. Events arrive in commit order:
// a transaction's Change events, then its Commit. A transaction delivered
// again by a stream restarted at the same cursor carries the same changes in
// the same order, which is what lets the engine resume in the middle of one.
type ReplicationStream interface {
	// Events delivers the stream in batches of consecutive events. It is
	// closed when the stream ends; Err then says why.
	Events() <-chan *Batch
	// Release hands a batch back once its events are processed: the stream
	// reuses its memory, so nothing of it may be kept.
	Release(*Batch)
	// Err is the error that ended the stream, if any.
	Err() error
	// Acknowledge tells the database that every change up to and including
	// cursor is durably captured and may be released.
	Acknowledge(ctx context.Context, cursor string) error
	// Close ends the stream, first confirming the last acknowledged cursor.
	Close(ctx context.Context) error
}

// Batch is a run of consecutive events. A stream may keep the events'
// memory in Changes and Arena and reuse it once the batch is released, so
// that delivering a change allocates nothing.
type Batch struct {
	Events  []Event
	Changes []Change
	Arena   []byte
}

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	clear(b.Events)
	b.Events = b.Events[:0]
	b.Changes = b.Changes[:0]
	b.Arena = b.Arena[:0]
}

// StreamID names a source table, e.g. "public.users".
type StreamID struct {
	Schema string
	Table  string
}

func (s StreamID) String() string { return s.Schema + "." + s.Table }

// Row is one row of a backfill chunk.
type Row struct {
	// Key is the row's key in the engine's order-preserving encoding.
	Key []byte
	// Doc is the complete JSON document for the row, _meta included.
	Doc []byte
}

// Event is one item of the replication stream: *Change, *Commit, *Watermark,
// *Keepalive, *SchemaChange or *Notice.
type Event interface{ isEvent() }

// Op is the kind of a change.
type Op byte

const (
	OpInsert Op = 'c'
	OpUpdate Op = 'u'
	OpDelete Op = 'd'
)

// Change is one row change of a source transaction. A key-changing update is
// delivered as two Changes: a delete of the old key, then an insert or update
// of the new one.
type Change struct {
	Stream StreamID
	Op     Op
	// Key is the changed row's key, encoded as ScanChunk's keys are.
	Key []byte
	// Doc is the complete JSON document to emit, _meta included.
	Doc []byte
}

// Commit ends a source transaction. Cursor is the position from which the
// stream resumes after everything up to this commit.
//
// The other fields say how far behind the source the capture is (see
// Progress), and may be left zero: Position is where the commit ends in
// the source's change log, in bytes; SourceEnd how far the log extended
// when the source last said; CommitTime when the transaction committed.
type Commit struct {
	Cursor     string
	Position   uint64
	SourceEnd  uint64
	CommitTime time.Time
}

// Watermark reports that a WriteWatermark with this id has been replicated.
// Its transaction's Commit follows.
type Watermark struct {
	ID string
}

// Keepalive reports that the stream holds no unreported transaction below
// Cursor: a checkpoint at Cursor is safe whenever no transaction is open.
//
// Position is Cursor in bytes of the source's change log (0: unknown), the
// source's end as far as it knows, for Progress.
type Keepalive struct {
	Cursor   string
	Position uint64
}

// Notice reports something about a stream that a user should know but that
// needs no document, such as a TRUNCATE. The engine logs it.
type Notice struct {
	Stream  StreamID
	Message string
}

// SchemaChange reports that a table's columns changed: the changes that
// follow are decoded with its new columns.
type SchemaChange struct {
	Stream StreamID
}

func (*Change) isEvent()       {}
func (*SchemaChange) isEvent() {}
func (*Commit) isEvent()       {}
func (*Watermark) isEvent()    {}
func (*Keepalive) isEvent()    {}
func (*Notice) isEvent()       {}

// ErrStreamEnded is returned when the replication stream closes without an error.
var ErrStreamEnded = errors.New("replication stream ended")
