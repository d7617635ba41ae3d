package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The row messages of pgoutput (Insert, Update, Delete) are decoded here
// rather than by pglogrepl.Parse, which copies every column value: these
// decoders return slices of the received message, valid until the next
// receive, and documents are built from them before that.

// Tuple column kinds.
const (
	tupleNull      = 'n'
	tupleUnchanged = 'u' // an unchanged TOASTed value, not sent
	tupleText      = 't'
	tupleBinary    = 'b'
)

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

// rowMessage is a decoded Insert ('I'), Update ('U') or Delete ('D').
type rowMessage struct {
	kind     byte
	relation uint32
	// oldKind is 'K' (key columns only), 'O' (the whole old row) or 0.
	oldKind byte
	old     tuple
	new     tuple
}

// decodeRow decodes a row message (its type byte included) into m.
func decodeRow(src []byte, m *rowMessage) error {
	if len(src) < 6 {
		return errShortMessage
	}
	m.kind = src[0]
	m.relation = binary.BigEndian.Uint32(src[1:])
	m.oldKind = 0
	src = src[5:]
	var err error
	if src[0] == 'K' || src[0] == 'O' {
		if m.kind == 'I' {
			return fmt.Errorf("insert message with an old tuple")
		}
		m.oldKind = src[0]
		if src, err = decodeTuple(src[1:], &m.old); err != nil {
			return err
		}
	}
	if m.kind == 'D' {
		if m.oldKind == 0 {
			return fmt.Errorf("delete message without an old tuple")
		}
		return nil
	}
	if len(src) < 1 || src[0] != 'N' {
		return fmt.Errorf("%c message without a new tuple", m.kind)
	}
	_, err = decodeTuple(src[1:], &m.new)
	return err
}
