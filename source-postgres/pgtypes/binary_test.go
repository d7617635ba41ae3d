package pgtypes

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// The rewriting of binary values is proven equal to PostgreSQL's text
// output by replication's TestBinaryDocumentsEqualText, against a server.
// These cases pin what needs no server: malformed values are errors that
// name the type, never a panic or a wrong value.
func TestAppendBinaryTextRejectsMalformedValues(t *testing.T) {
	numeric := func(header ...byte) []byte { return header }
	for _, c := range []struct {
		typ   *Type
		value []byte
		want  string
	}{
		{builtin(pgtype.Int4OID, "int4"), []byte{1, 2, 3}, "wrong length"},
		{builtin(pgtype.Int8OID, "int8"), nil, "wrong length"},
		{builtin(pgtype.BoolOID, "bool"), []byte{1, 0}, "wrong length"},
		{builtin(pgtype.TimetzOID, "timetz"), make([]byte, 8), "wrong length"},
		{builtin(pgtype.UUIDOID, "uuid"), make([]byte, 15), "wrong length"},
		{builtin(pgtype.JSONBOID, "jsonb"), []byte{2, '{', '}'}, "unknown jsonb version"},
		{builtin(pgtype.JSONBOID, "jsonb"), nil, "unknown jsonb version"},
		{builtin(pgtype.NumericOID, "numeric"), numeric(0, 1, 0, 0, 0, 0), "wrong length"},
		{builtin(pgtype.NumericOID, "numeric"), numeric(0, 2, 0, 0, 0, 0, 0, 0, 0, 1), "wrong length"},
		{builtin(pgtype.NumericOID, "numeric"), numeric(0, 1, 0, 0, 0x12, 0x34, 0, 0, 0, 1), "unknown numeric sign"},
		{builtin(pgtype.NumericOID, "numeric"), numeric(0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff), "out of range"},
		{builtin(pgtype.IntervalOID, "interval"), make([]byte, 16), "no binary rewriting"},
	} {
		_, err := c.typ.AppendBinaryText(nil, c.value)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.typ.Name) {
			t.Errorf("%s %x: error %v, want one naming the type and saying %q", c.typ.Name, c.value, err, c.want)
		}
	}
}

func TestBinaryForm(t *testing.T) {
	for _, c := range []struct {
		typ  *Type
		want BinaryForm
	}{
		{builtin(pgtype.TextOID, "text"), BinaryIsText},
		{builtin(pgtype.TimestamptzOID, "timestamptz"), BinaryRewritten},
		{builtin(pgtype.IntervalOID, "interval"), BinaryUnsupported},
		{enumType("a"), BinaryIsText},
		{domainOf(builtin(pgtype.NumericOID, "numeric")), BinaryRewritten},
		{domainOf(arrayOf(builtin(pgtype.Int4OID, "int4"))), BinaryUnsupported},
		{arrayOf(builtin(pgtype.Int4OID, "int4")), BinaryUnsupported},
		{&Type{OID: pgtype.TextOID, Name: "citext", Namespace: "public", Kind: KindBase}, BinaryUnsupported},
		{&Type{Name: "unknown type 99999", Kind: KindUnknown}, BinaryUnsupported},
	} {
		if got := c.typ.BinaryForm(); got != c.want {
			t.Errorf("%s: BinaryForm %d, want %d", c.typ.Name, got, c.want)
		}
	}
}

// FuzzAppendBinaryText: any bytes, as any rewritten type, are text or an
// error, never a panic.
func FuzzAppendBinaryText(f *testing.F) {
	oids := []uint32{pgtype.BoolOID, pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID,
		pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID, pgtype.JSONBOID, pgtype.UUIDOID, pgtype.ByteaOID,
		pgtype.DateOID, pgtype.TimeOID, pgtype.TimetzOID, pgtype.TimestampOID, pgtype.TimestamptzOID}
	f.Add(uint8(7), []byte{0, 1, 0, 0, 0, 0, 0, 2, 0, 12})
	f.Add(uint8(14), []byte{0x80, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, which uint8, value []byte) {
		typ := builtin(oids[int(which)%len(oids)], "fuzzed")
		out, err := typ.AppendBinaryText(nil, value)
		if err == nil && len(out) == 0 && typ.OID != pgtype.ByteaOID && typ.OID != pgtype.JSONBOID {
			t.Errorf("%x as %d: no text and no error", value, typ.OID)
		}
	})
}
