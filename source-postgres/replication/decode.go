package replication

import (
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"pgcapture/source-postgres/document"
	"pgcapture/sqlcapture"
)

// decode handles one pgoutput message, received in XLogData at lsn: each
// type of message has its handler below.
func (s *Stream) decode(lsn uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if s.streamed.cur != nil {
		return s.streamedMessage(lsn, data) // streamed.go
	}
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeBegin:
		return s.begin(data[1:])
	case pglogrepl.MessageTypeCommit:
		return s.commit(data[1:])
	case pglogrepl.MessageTypeRelation:
		return s.relation(data[1:])
	case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
		return s.rowChange(lsn, data)
	case pglogrepl.MessageTypeTruncate:
		return s.truncate(data[1:])
	case pglogrepl.MessageTypeStreamStart:
		return s.streamStart(data[1:])
	case pglogrepl.MessageTypeStreamCommit:
		return s.streamCommit(data[1:])
	case pglogrepl.MessageTypeStreamAbort:
		return s.streamAbort(data[1:])
	case pglogrepl.MessageTypeType, pglogrepl.MessageTypeOrigin, pglogrepl.MessageTypeMessage:
		// Type and Origin messages need nothing: types are resolved from
		// the catalog by OID. Logical messages are not requested.
		return nil
	default:
		return fmt.Errorf("unexpected pgoutput message %q at %s", data[0], pglogrepl.LSN(lsn))
	}
}

// begin opens a transaction: its changes carry its commit position, time
// and id.
func (s *Stream) begin(src []byte) error {
	var m pglogrepl.BeginMessage
	if err := m.Decode(src); err != nil {
		return fmt.Errorf("decoding Begin: %w", err)
	}
	s.inTxn = true
	s.txn = document.Source{
		PrevCommitEnd:    s.prevEnd,
		CommitLSN:        uint64(m.FinalLSN),
		CommitTimeMillis: m.CommitTime.UnixMilli(),
		TxID:             m.Xid,
	}
	return nil
}

// commit closes the transaction with a Commit event at its end position,
// from which the stream resumes once it is acknowledged.
func (s *Stream) commit(src []byte) error {
	var m pglogrepl.CommitMessage
	if err := m.Decode(src); err != nil {
		return fmt.Errorf("decoding Commit: %w", err)
	}
	s.committed(m.TransactionEndLSN, m.CommitTime)
	return nil
}

// committed ends the open transaction, ordinary or streamed, at end.
func (s *Stream) committed(end pglogrepl.LSN, commitTime time.Time) {
	s.inTxn = false
	s.prevEnd = uint64(end)
	if s.prevEnd > s.idleLSN {
		s.idleLSN = s.prevEnd
	}
	if s.opts.Committed != nil {
		s.opts.Committed(s.txn.TxID)
	}
	s.fenceAtCommit(s.prevEnd)
	s.send(&sqlcapture.Commit{
		Cursor:     end.String(),
		Position:   s.prevEnd,
		SourceEnd:  s.serverEnd,
		CommitTime: commitTime,
	})
}

// relation caches a table's description; a captured table whose columns
// changed gets a SchemaChange event before its next row.
func (s *Stream) relation(src []byte) error {
	var m pglogrepl.RelationMessage
	if err := m.Decode(src); err != nil {
		return fmt.Errorf("decoding Relation: %w", err)
	}
	rel, changed, err := s.relations.put(&m)
	if err != nil {
		return err
	}
	if s.opts.Binary && (rel.table != nil || rel.watermarks) {
		if err := s.planBinary(rel); err != nil {
			return err
		}
	}
	if changed {
		s.send(&sqlcapture.SchemaChange{Stream: rel.stream})
	}
	return nil
}

// rowChange decodes an Insert, Update or Delete (data includes the type
// byte) and turns it into change events, or a watermark.
func (s *Stream) rowChange(lsn uint64, data []byte) error {
	m := &s.msg
	if err := decodeRow(data, m); err != nil {
		return fmt.Errorf("decoding a row change at %s: %w", pglogrepl.LSN(lsn), err)
	}
	rel := s.relations.get(m.relation)
	if rel != nil && rel.binary != nil {
		if err := s.textFromBinary(rel, m); err != nil {
			return fmt.Errorf("decoding a row change at %s: %w", pglogrepl.LSN(lsn), err)
		}
	}
	switch {
	case rel == nil:
		return fmt.Errorf("row change for relation %d before its Relation message", m.relation)
	case rel.watermarks:
		s.watermark(rel, m)
		return nil
	case rel.table == nil:
		return nil // a table of the publication that is not captured
	}
	return s.change(rel, lsn)
}

// watermark turns a write of this slot's row in the watermarks table into a
// Watermark event: the fence a backfill chunk waits for.
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

// truncate warns about each captured table truncated: pgoutput sends no row
// deletions for it.
func (s *Stream) truncate(src []byte) error {
	var m pglogrepl.TruncateMessage
	if err := m.Decode(src); err != nil {
		return fmt.Errorf("decoding Truncate: %w", err)
	}
	for _, id := range m.RelationIDs {
		if rel := s.relations.get(id); rel != nil && rel.table != nil {
			s.send(&sqlcapture.Notice{Stream: rel.stream, Message: "TRUNCATE of a captured table: PostgreSQL replicates no row deletions for it, so the collection keeps the truncated rows until they are deleted or the binding is backfilled again"})
		}
	}
	return nil
}
