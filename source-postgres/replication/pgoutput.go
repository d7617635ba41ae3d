package replication

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// The row messages of pgoutput (Insert, Update, Delete) are decoded here
// rather than by pglogrepl.Parse, which copies every column value: these
// decoders return slices of the received message, valid until the next
// receive, and documents are built from them before that. The three share
// one struct, rowMessage, so that its tuples' memory is reused by whichever
// comes next. The other messages are rare and decoded by pglogrepl.

// Tuple column kinds of a TupleData.
const (
	tupleNull      = pglogrepl.TupleDataTypeNull
	tupleUnchanged = pglogrepl.TupleDataTypeToast // an unchanged TOASTed value, not sent
	tupleText      = pglogrepl.TupleDataTypeText
	tupleBinary    = pglogrepl.TupleDataTypeBinary
)

// oldTupleKind says what an Update or Delete carries of the row as it was
// before the change.
type oldTupleKind byte

const (
	noOldTuple oldTupleKind = 0
	// oldKey: the replica identity's columns only, which an Update carries
	// when they changed and a Delete always, under the default identity.
	oldKey = oldTupleKind(pglogrepl.UpdateMessageTupleTypeKey)
	// oldRow: the whole old row, under REPLICA IDENTITY FULL.
	oldRow = oldTupleKind(pglogrepl.UpdateMessageTupleTypeOld)
)

// newTupleMarker precedes the new row of an Insert or Update.
const newTupleMarker = pglogrepl.UpdateMessageTupleTypeNew

// tuple is one decoded TupleData: a kind and a value per column.
type tuple struct {
	kinds  []byte
	values [][]byte
}

var errShortMessage = errors.New("truncated pgoutput message")

// decodeTuple decodes a TupleData at the start of src into t, reusing its
// slices, and returns what follows it.
func decodeTuple(src []byte, t *tuple) ([]byte, error) {
	if len(src) < 2 {
		return nil, errShortMessage
	}
	n := int(binary.BigEndian.Uint16(src))
	src = src[2:]
	t.kinds = t.kinds[:0]
	t.values = t.values[:0]
	for i := 0; i < n; i++ {
		if len(src) < 1 {
			return nil, errShortMessage
		}
		kind := src[0]
		src = src[1:]
		var value []byte
		switch kind {
		case tupleNull, tupleUnchanged:
		case tupleText, tupleBinary:
			if len(src) < 4 {
				return nil, errShortMessage
			}
			size := int(binary.BigEndian.Uint32(src))
			src = src[4:]
			if size < 0 || len(src) < size {
				return nil, errShortMessage
			}
			value = src[:size:size]
			src = src[size:]
		default:
			return nil, fmt.Errorf("unknown tuple column kind %q", kind)
		}
		t.kinds = append(t.kinds, kind)
		t.values = append(t.values, value)
	}
	return src, nil
}

// rowMessage is a decoded Insert, Update or Delete.
type rowMessage struct {
	kind     pglogrepl.MessageType
	relation uint32
	oldKind  oldTupleKind
	old      tuple // set unless oldKind is noOldTuple
	new      tuple // set unless kind is Delete
}

// decodeRow decodes a row message (its type byte included) into m.
func decodeRow(src []byte, m *rowMessage) error {
	if len(src) < 6 {
		return errShortMessage
	}
	m.kind = pglogrepl.MessageType(src[0])
	m.relation = binary.BigEndian.Uint32(src[1:])
	m.oldKind = noOldTuple
	src = src[5:]
	var err error
	if k := oldTupleKind(src[0]); k == oldKey || k == oldRow {
		if m.kind == pglogrepl.MessageTypeInsert {
			return fmt.Errorf("insert message with an old tuple")
		}
		m.oldKind = k
		if src, err = decodeTuple(src[1:], &m.old); err != nil {
			return err
		}
	}
	if m.kind == pglogrepl.MessageTypeDelete {
		if m.oldKind == noOldTuple {
			return fmt.Errorf("delete message without an old tuple")
		}
		return nil
	}
	if len(src) < 1 || src[0] != newTupleMarker {
		return fmt.Errorf("%v message without a new tuple", m.kind)
	}
	_, err = decodeTuple(src[1:], &m.new)
	return err
}
