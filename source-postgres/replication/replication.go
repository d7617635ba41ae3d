// Package replication reads a pgoutput logical replication slot and turns
// its messages into the capture engine's change events: this is where WAL
// messages are decoded and where the slot is told what may be released.
package replication

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/document"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
)

// Options configure a Stream.
type Options struct {
	Slot        string
	Publication string
	// Tables are the captured tables; changes of other tables are dropped.
	Tables map[sqlcapture.StreamID]*discovery.Table
	// Watermarks is the watermarks table, whose rows for Slot are fences.
	Watermarks sqlcapture.StreamID
	Types      *pgtypes.Registry
	// Committed, if set, is told the id of every delivered transaction.
	Committed func(xid uint32)
	Logger    logrus.FieldLogger
	// StatusInterval is how often the acknowledged position is reported to
	// the server even when nothing changes (well under wal_sender_timeout).
	StatusInterval time.Duration
	// IdleInterval is how often an idle stream reports the server's position
	// as a Keepalive, so an idle capture's slot keeps advancing.
	IdleInterval time.Duration
}

// Stream is an open replication stream.
type Stream struct {
	conn *pgconn.PgConn
	opts Options
	log  logrus.FieldLogger

	events chan *sqlcapture.Batch
	// free holds released batches for reuse.
	free   chan *sqlcapture.Batch
	closed chan struct{}
	exited chan struct{}
	err    error

	closeOnce sync.Once
	writeMu   sync.Mutex
	acked     atomic.Uint64
	// idlePending: an idle position went unreported for being too soon.
	idlePending atomic.Bool

	// Everything below belongs to the receiving goroutine.
	relations map[uint32]*relation
	batch     *sqlcapture.Batch // being filled
	// oldKey and newKey are scratch space for detecting key changes.
	oldKey, newKey []byte
	inTxn          bool
	txn            document.Source
	msg            rowMessage
	prevEnd        uint64
	idleAt         time.Time
	idleLSN        uint64
}

var _ sqlcapture.ReplicationStream = (*Stream)(nil)

// Start begins streaming from slot at startLSN (0: from the slot's confirmed
// position). The connection must be a replication=database connection; the
// Stream owns it from now on.
func Start(ctx context.Context, conn *pgconn.PgConn, startLSN uint64, opts Options) (*Stream, error) {
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 10 * time.Second
	}
	if opts.IdleInterval <= 0 {
		opts.IdleInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = logrus.StandardLogger()
	}
	args := []string{
		"proto_version '1'",
		"publication_names " + quoteLiteral(discovery.QuoteIdent(opts.Publication)),
	}
	if err := pglogrepl.StartReplication(ctx, conn, discovery.QuoteIdent(opts.Slot), pglogrepl.LSN(startLSN), pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return nil, fmt.Errorf("starting replication from slot %q at %s: %w", opts.Slot, pglogrepl.LSN(startLSN), err)
	}
	s := &Stream{
		conn:      conn,
		opts:      opts,
		log:       opts.Logger,
		events:    make(chan *sqlcapture.Batch, batchesQueued),
		free:      make(chan *sqlcapture.Batch, batchesQueued+2),
		closed:    make(chan struct{}),
		exited:    make(chan struct{}),
		relations: make(map[uint32]*relation),
		prevEnd:   startLSN,
		idleLSN:   startLSN,
	}
	s.acked.Store(startLSN)
	go s.receive()
	go s.reportStatus()
	return s, nil
}

// Batches bound what the stream holds: the engine is handed batches of up
// to batchChanges changes (or batchBytes of documents), at most
// batchesQueued of them waiting, so memory stays bounded whatever the size
// of a transaction, and a released batch's memory is reused.
const (
	batchChanges  = 1024
	batchBytes    = 1 << 20
	batchesQueued = 4
)

// Events implements sqlcapture.ReplicationStream.
func (s *Stream) Events() <-chan *sqlcapture.Batch { return s.events }

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

// Err implements sqlcapture.ReplicationStream.
func (s *Stream) Err() error {
	select {
	case <-s.exited:
		return s.err
	default:
		return nil
	}
}

// Acknowledge records that everything up to cursor is durably captured and
// tells the server at once, which advances the slot's confirmed_flush_lsn.
func (s *Stream) Acknowledge(ctx context.Context, cursor string) error {
	lsn, err := pglogrepl.ParseLSN(cursor)
	if err != nil {
		return fmt.Errorf("acknowledging cursor %q: %w", cursor, err)
	}
	for {
		old := s.acked.Load()
		if uint64(lsn) <= old || s.acked.CompareAndSwap(old, uint64(lsn)) {
			break
		}
	}
	return s.sendStatus(ctx, false)
}

// Close reports the acknowledged position one last time and ends the stream
// with CopyDone, so the slot keeps exactly what was acknowledged.
func (s *Stream) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closed) })
	select {
	case <-s.exited:
		return s.conn.Close(ctx)
	default:
	}
	err := s.sendStatus(ctx, false)
	if err == nil {
		s.writeMu.Lock()
		s.conn.Frontend().Send(&pgproto3.CopyDone{})
		err = s.conn.Frontend().Flush()
		s.writeMu.Unlock()
	}
	select {
	case <-s.exited:
	case <-ctx.Done():
	}
	if cerr := s.conn.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// sendStatus reports the acknowledged position. Asking for a reply makes
// the server answer with a keepalive carrying its position, which an idle
// stream turns into a checkpoint.
func (s *Stream) sendStatus(ctx context.Context, replyRequested bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	lsn := pglogrepl.LSN(s.acked.Load())
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
		WALFlushPosition: lsn,
		WALApplyPosition: lsn,
		ReplyRequested:   replyRequested,
	})
	if err != nil {
		return fmt.Errorf("sending the replication status update: %w", err)
	}
	return nil
}

// reportStatus sends the acknowledged position every StatusInterval, and
// sooner, at IdleInterval, when the stream passed over an idle position it
// did not report yet: the server's reply carries its position again.
func (s *Stream) reportStatus() {
	ticker := time.NewTicker(s.opts.IdleInterval)
	defer ticker.Stop()
	last := time.Now()
	for {
		select {
		case <-ticker.C:
			if !s.idlePending.Swap(false) && time.Since(last) < s.opts.StatusInterval {
				continue
			}
			if err := s.sendStatus(context.Background(), true); err != nil {
				s.log.WithError(err).Debug("periodic status update failed")
			}
			last = time.Now()
		case <-s.exited:
			return
		}
	}
}

func (s *Stream) receive() {
	err := s.receiveLoop()
	if err != nil {
		select {
		case <-s.closed:
			err = nil // a failure while shutting down is not the stream's error
		default:
		}
	}
	s.err = err
	close(s.events)
	close(s.exited)
}

func (s *Stream) receiveLoop() error {
	for {
		// A plain background context: a cancellable one makes every receive
		// start a context watcher, which costs on this per-message path.
		// Close ends a blocked receive by closing the connection.
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			return fmt.Errorf("receiving from the replication stream: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return err
				}
				if pkm.ReplyRequested {
					if err := s.sendStatus(context.Background(), false); err != nil {
						return err
					}
				}
				s.idle(uint64(pkm.ServerWALEnd))
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return err
				}
				if err := s.decode(uint64(xld.WALStart), xld.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.CopyDone:
			return nil
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		}
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
	select {
	case s.events <- s.batch:
	case <-s.closed:
	}
	s.batch = nil
}

// idle reports the server's position while no transaction is open: every
// transaction committing below it has been delivered, so a checkpoint there
// lets the slot advance past WAL that no captured table wrote.
func (s *Stream) idle(walEnd uint64) {
	if s.inTxn || walEnd <= s.idleLSN {
		return
	}
	if time.Since(s.idleAt) < s.opts.IdleInterval {
		// Too soon after the last one to be worth a checkpoint; ask again
		// at the next interval rather than waiting for the server.
		s.idlePending.Store(true)
		return
	}
	s.idleLSN, s.idleAt = walEnd, time.Now()
	s.send(&sqlcapture.Keepalive{Cursor: pglogrepl.LSN(walEnd).String()})
}

func (s *Stream) decode(lsn uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeBegin:
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding Begin: %w", err)
		}
		s.inTxn = true
		s.txn = document.Source{
			PrevCommitEnd:    s.prevEnd,
			CommitLSN:        uint64(m.FinalLSN),
			CommitTimeMillis: m.CommitTime.UnixMilli(),
			TxID:             m.Xid,
		}
	case pglogrepl.MessageTypeCommit:
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding Commit: %w", err)
		}
		s.inTxn = false
		s.prevEnd = uint64(m.TransactionEndLSN)
		if s.prevEnd > s.idleLSN {
			s.idleLSN = s.prevEnd
		}
		if s.opts.Committed != nil {
			s.opts.Committed(s.txn.TxID)
		}
		s.send(&sqlcapture.Commit{Cursor: m.TransactionEndLSN.String()})
	case pglogrepl.MessageTypeRelation:
		var m pglogrepl.RelationMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding Relation: %w", err)
		}
		rel, err := s.newRelation(&m)
		if err != nil {
			return err
		}
		prev := s.relations[m.RelationID]
		s.relations[m.RelationID] = rel
		if rel.table != nil && rel.changedFrom(prev) {
			s.send(&sqlcapture.SchemaChange{Stream: rel.stream})
		}
	case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
		if err := decodeRow(data, &s.msg); err != nil {
			return fmt.Errorf("decoding a row change at %s: %w", pglogrepl.LSN(lsn), err)
		}
		return s.change(lsn)
	case pglogrepl.MessageTypeTruncate:
		var m pglogrepl.TruncateMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding Truncate: %w", err)
		}
		for _, id := range m.RelationIDs {
			if rel := s.relations[id]; rel != nil && rel.table != nil {
				s.send(&sqlcapture.Notice{Stream: rel.stream, Message: "TRUNCATE of a captured table: PostgreSQL replicates no row deletions for it, so the collection keeps the truncated rows until they are deleted or the binding is backfilled again"})
			}
		}
	case pglogrepl.MessageTypeType, pglogrepl.MessageTypeOrigin, pglogrepl.MessageTypeMessage:
		// Type and Origin messages need nothing: types are resolved from
		// the catalog by OID. Logical messages are not requested.
	default:
		return fmt.Errorf("unexpected pgoutput message %q at %s", data[0], pglogrepl.LSN(lsn))
	}
	return nil
}

// relation is what a Relation message says about a table, prepared for
// decoding its rows.
type relation struct {
	stream sqlcapture.StreamID
	// table is set for captured tables.
	table   *discovery.Table
	doc     *document.Table
	columns []relColumn
	// keys index the captured table's key columns in columns, in key order.
	keys []int
	// For the watermarks table: the columns holding the slot and the mark.
	watermarks             bool
	slotColumn, markColumn int
}

// columnInIdentity is the flag of a Relation message's column that is part
// of the table's replica identity.
const columnInIdentity = 1

type relColumn struct {
	name     string
	oid      uint32
	typmod   int32
	field    []byte
	typ      *pgtypes.Type
	identity bool
	// key is the discovered column, set for key columns.
	key *discovery.Column
}

func (s *Stream) newRelation(m *pglogrepl.RelationMessage) (*relation, error) {
	rel := &relation{stream: sqlcapture.StreamID{Schema: m.Namespace, Table: m.RelationName}}
	for _, c := range m.Columns {
		rel.columns = append(rel.columns, relColumn{
			name:     c.Name,
			oid:      c.DataType,
			typmod:   c.TypeModifier,
			field:    document.FieldName(c.Name),
			typ:      s.opts.Types.Lookup(c.DataType, c.TypeModifier),
			identity: c.Flags&columnInIdentity != 0,
		})
	}
	if rel.stream == s.opts.Watermarks {
		rel.watermarks = true
		rel.slotColumn, rel.markColumn = -1, -1
		for i, c := range rel.columns {
			switch c.name {
			case "slot":
				rel.slotColumn = i
			case "watermark":
				rel.markColumn = i
			}
		}
		if rel.slotColumn < 0 || rel.markColumn < 0 {
			return nil, fmt.Errorf("watermarks table %s must have the columns slot and watermark", rel.stream)
		}
		return rel, nil
	}
	table := s.opts.Tables[rel.stream]
	if table == nil {
		return rel, nil
	}
	rel.table = table
	rel.doc = document.NewTable(m.Namespace, m.RelationName)
	for _, name := range table.Key {
		idx := -1
		for i := range rel.columns {
			if rel.columns[i].name == name {
				idx = i
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("key column %q of table %s is missing from its replication stream", name, rel.stream)
		}
		for _, c := range table.Columns {
			if c.Name == name {
				rel.columns[idx].key = c
				// Key values are emitted as the discovered schema's key
				// types (floats and arrays, for one, as strings).
				rel.columns[idx].typ = c.JSONType()
			}
		}
		rel.keys = append(rel.keys, idx)
	}
	return rel, nil
}

func (s *Stream) change(lsn uint64) error {
	m := &s.msg
	rel := s.relations[m.relation]
	if rel == nil {
		return fmt.Errorf("row change for relation %d before its Relation message", m.relation)
	}
	if rel.watermarks {
		s.watermark(rel, m)
		return nil
	}
	if rel.table == nil {
		return nil
	}
	src := s.txn
	src.LSN = lsn
	var old *tuple
	if m.oldKind != noOldTuple {
		old = &m.old
	}

	switch m.kind {
	case pglogrepl.MessageTypeInsert:
		return s.emit(rel, sqlcapture.OpInsert, &src, &m.new, nil, nil)
	case pglogrepl.MessageTypeDelete:
		return s.emit(rel, sqlcapture.OpDelete, &src, old, nil, nil)
	}
	// An update. Key changes become a delete of the old key and a creation
	// of the new one, so keyed collections keep no row under the old key.
	if old != nil && rel.hasKey(old) {
		var err error
		if s.oldKey, err = rel.appendKey(s.oldKey[:0], old, nil); err != nil {
			return err
		}
		if s.newKey, err = rel.appendKey(s.newKey[:0], &m.new, old); err != nil {
			return err
		}
		if !bytes.Equal(s.oldKey, s.newKey) {
			if err := s.emit(rel, sqlcapture.OpDelete, &src, old, nil, nil); err != nil {
				return err
			}
			return s.emit(rel, sqlcapture.OpInsert, &src, &m.new, nil, old)
		}
	}
	var before *tuple
	if m.oldKind == oldRow {
		before = old
	}
	return s.emit(rel, sqlcapture.OpUpdate, &src, &m.new, before, old)
}

// emit builds and sends one change document. row is the image the document
// holds; before, when set, becomes _meta.before; fill, when it is a whole old
// row, supplies unchanged TOASTed values that row omits.
func (s *Stream) emit(rel *relation, op sqlcapture.Op, src *document.Source, row, before, fill *tuple) error {
	if fill != nil && s.msg.oldKind != oldRow {
		fill = nil
	}
	// The key and the document go into the batch's arena, and the change
	// into its preallocated changes: nothing is allocated per change.
	b := s.current()
	arena := b.Arena
	start := len(arena)
	arena, err := rel.appendKey(arena, row, fill)
	if err != nil {
		return err
	}
	keyEnd := len(arena)
	arena = rel.doc.BeginChange(arena, byte(op), src)
	if before != nil {
		arena = document.BeginBefore(arena)
		if arena, err = rel.appendColumns(arena, before, nil, false); err != nil {
			return err
		}
		arena = document.EndBefore(arena)
	}
	arena = document.EndMeta(arena)
	// A delete under the default replica identity carries only the key: the
	// other columns are sent as nulls that mean "not sent", not NULL.
	identityOnly := op == sqlcapture.OpDelete && s.msg.oldKind == oldKey
	if arena, err = rel.appendColumns(arena, row, fill, identityOnly); err != nil {
		return err
	}
	arena = document.End(arena)
	b.Arena = arena
	b.Changes = append(b.Changes, sqlcapture.Change{
		Stream: rel.stream,
		Op:     op,
		Key:    arena[start:keyEnd:keyEnd],
		Doc:    arena[keyEnd:len(arena):len(arena)],
	})
	b.Events = append(b.Events, &b.Changes[len(b.Changes)-1])
	if len(b.Changes) == cap(b.Changes) || len(b.Arena) >= batchBytes {
		s.flush()
	}
	return nil
}

// appendColumns appends row's columns as document fields. Unchanged TOASTed
// values are taken from fill when it has them, and omitted otherwise so the
// collection's merge reduction keeps the previous value.
func (rel *relation) appendColumns(doc []byte, row, fill *tuple, identityOnly bool) ([]byte, error) {
	var err error
	for i := range rel.columns {
		c := &rel.columns[i]
		if identityOnly && !c.identity || c.name == discovery.MetaField {
			continue // a column named _meta would collide with the metadata
		}
		kind, value := row.kinds[i], row.values[i]
		if kind == tupleUnchanged && fill != nil && fill.kinds[i] != tupleUnchanged {
			kind, value = fill.kinds[i], fill.values[i]
		}
		switch kind {
		case tupleUnchanged:
			continue
		case tupleNull:
			doc = document.Separator(doc)
			doc = append(doc, c.field...)
			doc = append(doc, "null"...)
		case tupleText:
			doc = document.Separator(doc)
			doc = append(doc, c.field...)
			if doc, err = c.typ.AppendJSON(doc, value); err != nil {
				return nil, fmt.Errorf("column %q of table %s: %w", c.name, rel.stream, err)
			}
		default:
			return nil, fmt.Errorf("column %q of table %s arrived in binary form, which was not requested", c.name, rel.stream)
		}
	}
	return doc, nil
}

// changedFrom reports whether the relation's columns differ from those of
// prev, its previous description in this stream, or when there was none
// from the columns the table was discovered with.
func (rel *relation) changedFrom(prev *relation) bool {
	type col struct {
		name   string
		oid    uint32
		typmod int32
	}
	var before, now []col
	for _, c := range rel.columns {
		now = append(now, col{c.name, c.oid, c.typmod})
	}
	if prev != nil {
		for _, c := range prev.columns {
			before = append(before, col{c.name, c.oid, c.typmod})
		}
	} else {
		for _, c := range rel.table.Columns {
			if !c.Generated {
				before = append(before, col{c.Name, c.Type.OID, c.Type.Typmod})
			}
		}
	}
	return !slices.Equal(before, now)
}

// hasKey reports whether a tuple carries every key column.
func (rel *relation) hasKey(t *tuple) bool {
	for _, k := range rel.keys {
		if t.kinds[k] != tupleText {
			return false
		}
	}
	return true
}

// appendKey encodes the key of row, taking key values the row omits as
// unchanged TOAST from fill.
func (rel *relation) appendKey(dst []byte, row, fill *tuple) ([]byte, error) {
	var err error
	for _, k := range rel.keys {
		kind, value := row.kinds[k], row.values[k]
		if kind == tupleUnchanged && fill != nil {
			kind, value = fill.kinds[k], fill.values[k]
		}
		if kind != tupleText {
			return nil, fmt.Errorf("key column %q of table %s is missing from a replicated change (kind %q)", rel.columns[k].name, rel.stream, kind)
		}
		if dst, err = rel.columns[k].key.AppendKey(dst, value); err != nil {
			return nil, fmt.Errorf("key column %q of table %s: %w", rel.columns[k].name, rel.stream, err)
		}
	}
	return dst, nil
}

func (s *Stream) watermark(rel *relation, m *rowMessage) {
	if m.kind == pglogrepl.MessageTypeDelete {
		return
	}
	t := &m.new
	if t.kinds[rel.slotColumn] != tupleText || t.kinds[rel.markColumn] != tupleText {
		return
	}
	if string(t.values[rel.slotColumn]) != s.opts.Slot {
		return
	}
	s.send(&sqlcapture.Watermark{ID: string(t.values[rel.markColumn])})
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
