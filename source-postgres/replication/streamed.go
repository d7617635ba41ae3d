package replication

import (
	"encoding/binary"
	"fmt"
	"maps"
	"os"

	"github.com/jackc/pglogrepl"

	"pgcapture/source-postgres/document"
	"pgcapture/sqlcapture"
)

// Large transactions streamed while in progress (protocol version 2,
// streaming 'on', PostgreSQL 14 and later).
//
// Without streaming, the server decodes a transaction larger than its
// logical_decoding_work_mem into files of its own and sends it only at
// commit, all at once. With it, the server sends such a transaction in
// blocks as it decodes it (Stream Start … Stream Stop), the blocks of
// different transactions interleaved, and ends it with Stream Commit, in
// commit order, or Stream Abort. A Flow transaction cannot be rolled back,
// so nothing of a streamed transaction is emitted before its commit: its
// changes are built into documents as they arrive, which overlaps the
// connector's work with the server's, and kept in a txnLog, in memory up to
// a bound and then in a temporary file. At Stream Commit the documents are
// completed with the commit's position and time and handed to the engine as
// one ordinary transaction, ending with the same Commit event: checkpoints
// and acknowledgements work as for any other transaction. A SIGKILL loses
// the logs with the process; the slot never confirmed anything past the
// last emitted commit, so the server sends the transactions again.
//
// Inside a block, each message carries the id of the (sub)transaction that
// made the change, after its type byte. A Stream Abort of a subtransaction
// (ROLLBACK TO SAVEPOINT) discards only the changes made in it, and in the
// subtransactions it contains, each of which is aborted by a message of its
// own.
//
// Relation messages: pgoutput tracks which relations it described to a
// streamed transaction apart from the rest of the stream, and counts them
// as described to the rest of the stream once the transaction commits. So
// does this: each streamed transaction has its own relations, consulted
// first while its blocks are decoded and merged into the stream's at its
// commit. They are kept when a subtransaction aborts, since pgoutput does
// not describe a relation again to the same transaction.

// streamedTxns are the streamed transactions not yet committed or aborted.
type streamedTxns struct {
	byXid map[uint32]*streamedTxn
	// cur is the transaction of the block being received, if any.
	cur *streamedTxn
	// dir holds the logs' files.
	dir string
	// scratch holds a record read back from a log's file.
	scratch []byte
}

type streamedTxn struct {
	xid       uint32
	log       txnLog
	relations map[uint32]*relation
	// aborted are the rolled back subtransactions.
	aborted map[uint32]bool
}

// streamedBuffers bounds the memory of the logs' buffers together: at the
// end of a block beyond it, the block's transaction spills its buffer and
// lets it go.
const streamedBuffers = 8 * txnLogChunk

func newStreamedTxns(dir string) streamedTxns {
	if dir == "" {
		dir = os.TempDir()
	}
	return streamedTxns{byXid: make(map[uint32]*streamedTxn), dir: dir}
}

// protocolArgs returns the START_REPLICATION arguments that choose the
// pgoutput protocol version, and streaming of large transactions with it.
func protocolArgs(opts Options) []string {
	if !opts.Streaming {
		return []string{"proto_version '1'"}
	}
	return []string{"proto_version '2'", "streaming 'on'"}
}

// streamStart opens a block of a streamed transaction: until its Stream
// Stop, events go to the transaction's log (see flush), and its relations
// are consulted first.
func (s *Stream) streamStart(src []byte) error {
	var m pglogrepl.StreamStartMessageV2
	if err := m.DecodeV2(src, false); err != nil {
		return fmt.Errorf("decoding Stream Start: %w", err)
	}
	if s.inTxn {
		return fmt.Errorf("Stream Start of transaction %d inside another transaction", m.Xid)
	}
	t := s.streamed.byXid[m.Xid]
	if t == nil {
		t = &streamedTxn{xid: m.Xid, relations: make(map[uint32]*relation)}
		s.streamed.byXid[m.Xid] = t
	}
	s.flush()
	s.streamed.cur = t
	s.relations.txn = t.relations
	// Suppresses idle positions while in the block, whose events would go
	// to the log. Only the change's own position (LSN) and the transaction
	// id are known yet: the rest of each document's source is completed at
	// the commit.
	s.inTxn = true
	s.txn = document.Source{TxID: m.Xid}
	return nil
}

// streamedMessage handles a message inside a block. The ones that carry
// a (sub)transaction id are decoded as outside a block once it is taken
// out, and their events logged under it.
func (s *Stream) streamedMessage(lsn uint64, data []byte) error {
	t := s.streamed.cur
	kind := pglogrepl.MessageType(data[0])
	switch kind {
	case pglogrepl.MessageTypeStreamStop:
		return s.streamStop()
	case pglogrepl.MessageTypeRelation, pglogrepl.MessageTypeType, pglogrepl.MessageTypeMessage,
		pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete, pglogrepl.MessageTypeTruncate:
	case pglogrepl.MessageTypeOrigin:
		return nil
	default:
		return fmt.Errorf("unexpected pgoutput message %q inside a block of streamed transaction %d at %s", data[0], t.xid, pglogrepl.LSN(lsn))
	}
	if len(data) < 5 {
		return fmt.Errorf("decoding a %v of streamed transaction %d at %s: %w", kind, t.xid, pglogrepl.LSN(lsn), errShortMessage)
	}
	subxid := binary.BigEndian.Uint32(data[1:])
	// The type byte moves over the id's last byte, so the rest reads as
	// the same message outside a block.
	data[4] = data[0]
	plain := data[4:]
	var err error
	switch kind {
	case pglogrepl.MessageTypeRelation:
		// Kept whatever subtransaction described it (see above).
		subxid = t.xid
		err = s.relation(plain[1:])
	case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
		err = s.rowChange(lsn, plain)
	case pglogrepl.MessageTypeTruncate:
		err = s.truncate(plain[1:])
	}
	if err != nil {
		return fmt.Errorf("streamed transaction %d: %w", t.xid, err)
	}
	return s.logEvents(t, subxid)
}

// logEvents moves the events of the current batch into t's log.
func (s *Stream) logEvents(t *streamedTxn, subxid uint32) error {
	b := s.batch
	if b == nil || len(b.Events) == 0 {
		return nil
	}
	for _, ev := range b.Events {
		if err := t.log.add(ev, subxid, s.streamed.dir); err != nil {
			return err
		}
	}
	b.Reset()
	return nil
}

// streamStop ends a block. When the buffers of all open streamed
// transactions hold more than streamedBuffers, this one's is spilled and
// let go.
func (s *Stream) streamStop() error {
	t := s.streamed.cur
	s.streamed.cur = nil
	s.relations.txn = nil
	s.inTxn = false
	buffers := 0
	for _, o := range s.streamed.byXid {
		if o.log.buf != nil {
			buffers += txnLogChunk
		}
	}
	if buffers > streamedBuffers {
		if err := t.log.release(s.streamed.dir); err != nil {
			return fmt.Errorf("streamed transaction %d: %w", t.xid, err)
		}
	}
	return nil
}

// streamAbort discards a streamed transaction, or the changes of one of
// its subtransactions.
func (s *Stream) streamAbort(src []byte) error {
	var m pglogrepl.StreamAbortMessageV2
	if err := m.DecodeV2(src, false); err != nil {
		return fmt.Errorf("decoding Stream Abort: %w", err)
	}
	t := s.streamed.byXid[m.Xid]
	if t == nil {
		return nil // nothing of it was received
	}
	if m.SubXid == m.Xid {
		t.log.close()
		delete(s.streamed.byXid, m.Xid)
		return nil
	}
	if t.aborted == nil {
		t.aborted = make(map[uint32]bool)
	}
	t.aborted[m.SubXid] = true
	return nil
}

// streamCommit emits a streamed transaction as an ordinary one: its logged
// events, completed with the commit's position and time, then its Commit.
func (s *Stream) streamCommit(src []byte) error {
	var m pglogrepl.StreamCommitMessageV2
	if err := m.DecodeV2(src, false); err != nil {
		return fmt.Errorf("decoding Stream Commit: %w", err)
	}
	t := s.streamed.byXid[m.Xid]
	if t == nil {
		s.log.WithField("xid", m.Xid).Warn("Stream Commit of a transaction of which nothing was streamed")
	}
	s.inTxn = true
	s.txn = document.Source{
		PrevCommitEnd:    s.prevEnd,
		CommitLSN:        uint64(m.CommitLSN),
		CommitTimeMillis: m.CommitTime.UnixMilli(),
		TxID:             m.Xid,
	}
	if t != nil {
		delete(s.streamed.byXid, m.Xid)
		err := t.log.replay(&s.streamed.scratch, func(r *txnRecord) error {
			if t.aborted[r.subxid] {
				return nil
			}
			return s.replayRecord(r)
		})
		t.log.close()
		if cap(s.streamed.scratch) > txnLogChunk {
			s.streamed.scratch = nil // held a huge value
		}
		if err != nil {
			return fmt.Errorf("streamed transaction %d: %w", m.Xid, err)
		}
		maps.Copy(s.relations.byID, t.relations)
	}
	s.committed(m.TransactionEndLSN, m.CommitTime)
	return nil
}

// replayRecord hands one logged event to the engine.
func (s *Stream) replayRecord(r *txnRecord) error {
	switch r.kind {
	case recChange:
		b := s.current()
		start := len(b.Arena)
		b.Arena = append(b.Arena, r.key...)
		keyEnd := len(b.Arena)
		arena, err := document.CompleteChange(b.Arena, r.doc, &s.txn)
		if err != nil {
			return err
		}
		s.queueChange(b, r.stream, r.op, arena, start, keyEnd)
	case recSchemaChange:
		s.send(&sqlcapture.SchemaChange{Stream: r.stream})
	case recNotice:
		s.send(&sqlcapture.Notice{Stream: r.stream, Message: string(r.doc)})
	case recWatermark:
		s.send(&sqlcapture.Watermark{ID: string(r.doc)})
	}
	return nil
}

// discardStreamed deletes the logs of the open streamed transactions, when
// the stream ends.
func (s *Stream) discardStreamed() {
	for xid, t := range s.streamed.byXid {
		t.log.close()
		delete(s.streamed.byXid, xid)
	}
	s.streamed.cur = nil
}
