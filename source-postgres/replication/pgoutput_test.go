package replication

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/jackc/pglogrepl"
)

// col is one column of a hand-built TupleData.
type col struct {
	kind  byte
	value string
}

func text(v string) col { return col{tupleText, v} }
func null() col         { return col{kind: tupleNull} }
func unchanged() col    { return col{kind: tupleUnchanged} }

// tupleData encodes a TupleData as pgoutput sends it: a column count, then
// per column a kind byte and, for text and binary values, a length and the
// bytes.
func tupleData(cols ...col) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, c.kind)
		if c.kind == tupleText || c.kind == tupleBinary {
			b = binary.BigEndian.AppendUint32(b, uint32(len(c.value)))
			b = append(b, c.value...)
		}
	}
	return b
}

// Row message types, short for the tables below.
const (
	ins = pglogrepl.MessageTypeInsert
	upd = pglogrepl.MessageTypeUpdate
	del = pglogrepl.MessageTypeDelete
)

// rowMsg encodes a row message: its type, the relation id, then the parts
// (submessage markers and tuples).
func rowMsg(kind pglogrepl.MessageType, relation uint32, parts ...any) []byte {
	b := binary.BigEndian.AppendUint32([]byte{byte(kind)}, relation)
	for _, p := range parts {
		switch p := p.(type) {
		case byte:
			b = append(b, p)
		case oldTupleKind:
			b = append(b, byte(p))
		case []byte:
			b = append(b, p...)
		}
	}
	return b
}

// validRowMessages are well-formed messages of every shape decodeRow reads.
func validRowMessages() map[string][]byte {
	return map[string][]byte{
		"insert":             rowMsg(ins, 16384, newTupleMarker, tupleData(text("1"), null(), text("héllo"))),
		"insert no columns":  rowMsg(ins, 1, newTupleMarker, tupleData()),
		"insert empty text":  rowMsg(ins, 1, newTupleMarker, tupleData(text(""), text("x"))),
		"insert binary":      rowMsg(ins, 1, newTupleMarker, tupleData(col{tupleBinary, "\x00\x01\xff"})),
		"update":             rowMsg(upd, 7, newTupleMarker, tupleData(text("1"), unchanged(), text("new"))),
		"update key changed": rowMsg(upd, 7, oldKey, tupleData(text("1"), null(), null()), newTupleMarker, tupleData(text("2"), unchanged(), text("new"))),
		"update full":        rowMsg(upd, 7, oldRow, tupleData(text("1"), text("big"), text("old")), newTupleMarker, tupleData(text("1"), unchanged(), text("new"))),
		"delete key":         rowMsg(del, 7, oldKey, tupleData(text("1"), null(), null())),
		"delete full":        rowMsg(del, 7, oldRow, tupleData(text("1"), text("big"), null())),
	}
}

// tupleOf decodes what a tuple holds, for comparison: "kind:value" per column.
func tupleOf(t *tuple) []string {
	var out []string
	for i, k := range t.kinds {
		switch k {
		case tupleText, tupleBinary:
			out = append(out, string(k)+":"+string(t.values[i]))
		default:
			out = append(out, string(k))
		}
	}
	return out
}

func TestDecodeRow(t *testing.T) {
	msgs := validRowMessages()
	for _, tc := range []struct {
		name     string
		kind     pglogrepl.MessageType
		relation uint32
		oldKind  oldTupleKind
		old, new []string
	}{
		{name: "insert", kind: ins, relation: 16384, new: []string{"t:1", "n", "t:héllo"}},
		{name: "insert no columns", kind: ins, relation: 1, new: nil},
		{name: "insert empty text", kind: ins, relation: 1, new: []string{"t:", "t:x"}},
		{name: "insert binary", kind: ins, relation: 1, new: []string{"b:\x00\x01\xff"}},
		{name: "update", kind: upd, relation: 7, new: []string{"t:1", "u", "t:new"}},
		{name: "update key changed", kind: upd, relation: 7, oldKind: oldKey, old: []string{"t:1", "n", "n"}, new: []string{"t:2", "u", "t:new"}},
		{name: "update full", kind: upd, relation: 7, oldKind: oldRow, old: []string{"t:1", "t:big", "t:old"}, new: []string{"t:1", "u", "t:new"}},
		{name: "delete key", kind: del, relation: 7, oldKind: oldKey, old: []string{"t:1", "n", "n"}},
		{name: "delete full", kind: del, relation: 7, oldKind: oldRow, old: []string{"t:1", "t:big", "n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A message decoded before must leave nothing behind.
			var m rowMessage
			if err := decodeRow(msgs["update full"], &m); err != nil {
				t.Fatal(err)
			}
			if err := decodeRow(msgs[tc.name], &m); err != nil {
				t.Fatalf("decodeRow: %v", err)
			}
			if m.kind != tc.kind || m.relation != tc.relation || m.oldKind != tc.oldKind {
				t.Errorf("decoded kind %q relation %d old kind %q, want %q %d %q", m.kind, m.relation, m.oldKind, tc.kind, tc.relation, tc.oldKind)
			}
			if tc.oldKind != noOldTuple && !slices.Equal(tupleOf(&m.old), tc.old) {
				t.Errorf("old tuple %q, want %q", tupleOf(&m.old), tc.old)
			}
			if tc.kind != del && !slices.Equal(tupleOf(&m.new), tc.new) {
				t.Errorf("new tuple %q, want %q", tupleOf(&m.new), tc.new)
			}
			for i, k := range m.new.kinds {
				if (k == tupleNull || k == tupleUnchanged) != (m.new.values[i] == nil) {
					t.Errorf("column %d of kind %q has value %q: only null and unchanged columns have none", i, k, m.new.values[i])
				}
			}
		})
	}
}

// TestDecodedValuesAreBounded checks that appending to a decoded value,
// which aliases the message, cannot overwrite the bytes that follow it.
func TestDecodedValuesAreBounded(t *testing.T) {
	msg := validRowMessages()["update full"]
	orig := bytes.Clone(msg)
	var m rowMessage
	if err := decodeRow(msg, &m); err != nil {
		t.Fatal(err)
	}
	for _, tup := range []*tuple{&m.old, &m.new} {
		for _, v := range tup.values {
			_ = append(v, "OVERWRITE"...)
		}
	}
	if !bytes.Equal(msg, orig) {
		t.Errorf("appending to decoded values changed the message:\n%q\n%q", msg, orig)
	}
}

func TestDecodeRowRejectsMalformedMessages(t *testing.T) {
	// Every strict prefix of a valid message is truncated somewhere.
	for name, msg := range validRowMessages() {
		for n := range len(msg) {
			var m rowMessage
			if err := decodeRow(msg[:n], &m); err == nil {
				t.Errorf("%s cut to %d of %d bytes decoded without an error", name, n, len(msg))
			}
		}
	}
	hugeLength := append(binary.BigEndian.AppendUint16(nil, 1), tupleText, 0xff, 0xff, 0xff, 0xff, 'x')
	for name, msg := range map[string][]byte{
		"insert with an old tuple":   rowMsg(ins, 1, oldKey, tupleData(text("1")), newTupleMarker, tupleData(text("1"))),
		"delete without an old one":  rowMsg(del, 1, newTupleMarker, tupleData(text("1"))),
		"update without a new one":   rowMsg(upd, 1, oldKey, tupleData(text("1"))),
		"unknown submessage":         rowMsg(upd, 1, byte('X'), tupleData(text("1"))),
		"unknown column kind":        rowMsg(ins, 1, newTupleMarker, tupleData(col{kind: 'x'})),
		"length beyond the message":  rowMsg(ins, 1, newTupleMarker, hugeLength),
		"more columns than sent":     rowMsg(ins, 1, newTupleMarker, binary.BigEndian.AppendUint16(nil, 3), byte(tupleNull)),
		"old tuple cut before its N": rowMsg(upd, 1, oldRow, binary.BigEndian.AppendUint16(nil, 2), byte(tupleNull)),
	} {
		var m rowMessage
		if err := decodeRow(msg, &m); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

// FuzzDecodeRow feeds arbitrary bytes to decodeRow: it must return an error
// or a consistent message, and never panic.
func FuzzDecodeRow(f *testing.F) {
	for _, msg := range validRowMessages() {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m rowMessage
		if err := decodeRow(data, &m); err != nil {
			return
		}
		tuples := []*tuple{}
		if m.oldKind != noOldTuple {
			tuples = append(tuples, &m.old)
		}
		if m.kind != del {
			tuples = append(tuples, &m.new)
		}
		for _, tup := range tuples {
			if len(tup.kinds) != len(tup.values) {
				t.Fatalf("%d kinds but %d values", len(tup.kinds), len(tup.values))
			}
			for i, k := range tup.kinds {
				switch k {
				case tupleNull, tupleUnchanged:
					if tup.values[i] != nil {
						t.Fatalf("column %d of kind %q has a value", i, k)
					}
				case tupleText, tupleBinary:
					if tup.values[i] == nil || cap(tup.values[i]) != len(tup.values[i]) {
						t.Fatalf("column %d of kind %q: value %q with capacity %d", i, k, tup.values[i], cap(tup.values[i]))
					}
				default:
					t.Fatalf("column %d has unknown kind %q", i, k)
				}
			}
		}
	})
}
