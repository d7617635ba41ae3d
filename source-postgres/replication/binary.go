package replication

import (
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
)

// Binary mode. With Options.Binary the stream asks pgoutput for binary
// values (PostgreSQL 14+), which spares the walsender the text output
// functions. PostgreSQL then sends every column whose type has a send
// function in binary, for the whole session, so a session may be binary
// only if every column of every decoded table has a type whose binary
// format pgtypes rewrites (pgtypes.Type.BinaryForm). The caller checks the
// captured tables before asking (BinarySafe); a table that gains a column
// of another type mid-stream ends the stream with ErrTextNeeded, a
// transient error: the capture reconnects at its last commit and the
// caller, seeing it, streams in text from then on.
//
// Binary values are rewritten into their text output before anything else
// reads the row, so documents, keys and watermarks are built by the very
// same code, byte for byte, in both modes.

// ErrTextNeeded ends a binary stream that met a column whose binary values
// it cannot rewrite; the stream must be restarted in text mode.
var ErrTextNeeded = errors.New("a replicated table has a column whose type is received as text only")

// BinarySafe reports whether every column of the tables can be received in
// binary, and if not names the first column that cannot.
func BinarySafe(tables map[sqlcapture.StreamID]*discovery.Table) (ok bool, why string) {
	for id, t := range tables {
		for _, c := range t.Columns {
			if !c.Unpublished && c.Type.BinaryForm() == pgtypes.BinaryUnsupported {
				return false, fmt.Sprintf("column %q of %s is of type %s", c.Name, id, c.TypeName)
			}
		}
	}
	return true, ""
}

// planBinary prepares a decoded table for binary rows: the type of each
// column that arrives rewritten, nil for one whose binary value is its
// text. It fails with ErrTextNeeded when a column cannot be received in
// binary.
func (s *Stream) planBinary(rel *relation) error {
	rel.binary = make([]*pgtypes.Type, len(rel.columns))
	for i := range rel.columns {
		c := &rel.columns[i]
		t := s.relations.types.Lookup(c.oid, c.typmod)
		switch t.BinaryForm() {
		case pgtypes.BinaryRewritten:
			rel.binary[i] = t
		case pgtypes.BinaryIsText:
		default:
			return sqlcapture.Transient(fmt.Errorf("column %q of %s is of type %s, which the stream receives as text only; restarting the stream in text mode: %w",
				c.name, rel.stream, t.Name, ErrTextNeeded))
		}
	}
	return nil
}

// textFromBinary rewrites the binary values of a row message into their
// text, in the stream's scratch buffer, valid until the next row message.
func (s *Stream) textFromBinary(rel *relation, m *rowMessage) error {
	s.binText, s.binSpans = s.binText[:0], s.binSpans[:0]
	if m.oldKind != noOldTuple {
		if err := s.tupleFromBinary(rel, &m.old); err != nil {
			return err
		}
	}
	if m.kind != pglogrepl.MessageTypeDelete {
		if err := s.tupleFromBinary(rel, &m.new); err != nil {
			return err
		}
	}
	// binText's array may have moved as it grew: the rewritten values are
	// sliced from it only now.
	for _, sp := range s.binSpans {
		sp.tuple.values[sp.column] = s.binText[sp.start:sp.end:sp.end]
	}
	return nil
}

func (s *Stream) tupleFromBinary(rel *relation, t *tuple) error {
	if len(t.kinds) != len(rel.binary) {
		return fmt.Errorf("a row of %s has %d columns, its Relation message %d", rel.stream, len(t.kinds), len(rel.binary))
	}
	for i, kind := range t.kinds {
		if kind != tupleBinary {
			continue
		}
		t.kinds[i] = tupleText
		typ := rel.binary[i]
		if typ == nil {
			continue // the binary value is the text
		}
		start := len(s.binText)
		var err error
		if s.binText, err = typ.AppendBinaryText(s.binText, t.values[i]); err != nil {
			return fmt.Errorf("column %q of %s: %w", rel.columns[i].name, rel.stream, err)
		}
		s.binSpans = append(s.binSpans, binSpan{tuple: t, column: i, start: start, end: len(s.binText)})
	}
	return nil
}

// binSpan places a rewritten value of a tuple in the scratch buffer.
type binSpan struct {
	tuple              *tuple
	column, start, end int
}
