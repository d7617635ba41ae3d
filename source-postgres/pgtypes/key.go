package pgtypes

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5/pgtype"

	"pgcapture/sqlcapture"
)

// Row keys are compared by the engine as byte strings built with the
// sqlcapture key functions, while backfill queries order and filter rows in
// SQL. The two orders must agree exactly, so each type is paired with a SQL
// expression whose order its encoding reproduces:
//
//	type                                  ORDER BY             encoding
//	------------------------------------  -------------------  ------------------------------------------
//	smallint, integer, bigint, oid        col                  integer
//	boolean                               col                  boolean
//	real, double precision                col                  float (NaN above +Inf, -0 = 0)
//	numeric                               col                  decimal (NaN above Infinity)
//	bytea                                 col                  bytes
//	uuid                                  col                  the 16 bytes
//	date                                  col                  days since 2000-01-01, ±infinity extreme
//	timestamp, timestamptz                col                  microseconds since 2000-01-01, likewise
//	time                                  col                  microseconds since midnight
//	enum                                  col                  float: the label's pg_enum.enumsortorder
//	text, varchar, name, character(n)     col COLLATE "C"      string (character(n) without trailing blanks)
//	anything else (citext, inet, ...)     format('%s', col)    string: the text output
//	                                        COLLATE "C"
//
// Native orderings keep a primary-key index usable. An enum is encoded by
// its sort order rather than by its label's position so that a key saved in
// a checkpoint keeps its meaning when labels are added to the enum.
//
// The last row orders by the text output itself (format's %s is the type's
// output function), not by a cast to text, because some casts differ from
// the output: inet::text always shows the prefix length. It is a total order
// on the distinct values of types whose output function is one-to-one,
// which holds for the built-in types. It depends on the session parameters,
// which every connection sets alike.

// keyKind is how a type is encoded as a key element.
type keyKind uint8

const (
	keyText keyKind = iota
	keyString
	keyInt
	keyBool
	keyFloat
	keyDecimal
	keyBytea
	keyUUID
	keyDate
	keyTimestamp
	keyTimestamptz
	keyTime
	keyEnum
)

func (t *Type) keyKind() keyKind {
	t = t.resolve()
	switch {
	case t.Kind == KindEnum:
		return keyEnum
	case t.Kind != KindBase:
		return keyText
	}
	switch t.OID {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return keyInt
	case pgtype.BoolOID:
		return keyBool
	case pgtype.Float4OID, pgtype.Float8OID:
		return keyFloat
	case pgtype.NumericOID:
		return keyDecimal
	case pgtype.ByteaOID:
		return keyBytea
	case pgtype.UUIDOID:
		return keyUUID
	case pgtype.DateOID:
		return keyDate
	case pgtype.TimestampOID:
		return keyTimestamp
	case pgtype.TimestamptzOID:
		return keyTimestamptz
	case pgtype.TimeOID:
		return keyTime
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.NameOID, pgtype.BPCharOID:
		return keyString
	}
	return keyText
}

// KeyOrderExpr returns the SQL expression by which rows are ordered and
// compared on a key column of this type. column is the quoted column name.
// collation is the column's collation, quoted and schema-qualified, if it
// orders text by bytes ("C", "POSIX", or a database default that is one),
// and "" otherwise. A column that orders by bytes is left bare, so that its
// index serves the backfill; any other text column gets COLLATE "C".
func (t *Type) KeyOrderExpr(column, collation string) string {
	switch t.keyKind() {
	case keyText:
		return "format('%s', " + column + `) COLLATE "C"`
	case keyString:
		if collation == "" {
			return column + ` COLLATE "C"`
		}
	}
	return column
}

// KeyParamExpr returns the placeholder for parameter n, cast so that it
// compares with KeyOrderExpr as the key encoding orders: "$3::int8",
// `$1::text COLLATE "C"`. collation is as for KeyOrderExpr: a text
// parameter takes the column's own collation when that orders by bytes, as
// an index serves only comparisons in its own collation. The parameter's
// value is given by KeyParam.
func (t *Type) KeyParamExpr(n int, collation string) string {
	p := "$" + strconv.Itoa(n)
	switch t.keyKind() {
	case keyText:
		return p + `::text COLLATE "C"`
	case keyString:
		if collation == "" {
			collation = `"C"`
		}
		switch base := t.resolve(); base.OID {
		case pgtype.BPCharOID, pgtype.NameOID:
			// Compare as the column's own type: character(n) ignores
			// trailing blanks, and its index is usable.
			return p + "::" + base.SQLName() + " COLLATE " + collation
		}
		return p + "::text COLLATE " + collation
	}
	return p + "::" + t.resolve().SQLName()
}

// AppendKey appends the key element of a value, given its text output, with
// the sqlcapture key functions. HOT PATH: called for every captured row.
func (t *Type) AppendKey(dst, text []byte) ([]byte, error) {
	base := t.resolve()
	switch t.keyKind() {
	case keyText:
		return sqlcapture.AppendKeyString(dst, string(text)), nil
	case keyString:
		if base.OID == pgtype.BPCharOID {
			text = bytes.TrimRight(text, " ")
		}
		return sqlcapture.AppendKeyString(dst, string(text)), nil
	case keyInt:
		if v, ok := parseInt(text); ok {
			return sqlcapture.AppendKeyInt(dst, v), nil
		}
	case keyBool:
		switch string(text) {
		case "t":
			return sqlcapture.AppendKeyBool(dst, true), nil
		case "f":
			return sqlcapture.AppendKeyBool(dst, false), nil
		}
	case keyFloat:
		if v, err := strconv.ParseFloat(string(text), floatBits(base)); err == nil {
			return sqlcapture.AppendKeyFloat(dst, v), nil
		}
	case keyDecimal:
		out, err := sqlcapture.AppendKeyDecimal(dst, string(text))
		if err == nil {
			return out, nil
		}
	case keyBytea:
		if digits, ok := byteaHex(text); ok {
			var buf [64]byte
			raw, err := hex.AppendDecode(buf[:0], digits)
			if err == nil {
				return sqlcapture.AppendKeyBytes(dst, raw), nil
			}
		}
	case keyUUID:
		var id [16]byte
		if parseUUID(id[:], text) {
			return sqlcapture.AppendKeyBytes(dst, id[:]), nil
		}
	case keyDate:
		if v, ok := dateKey(text); ok {
			return sqlcapture.AppendKeyInt(dst, v), nil
		}
	case keyTimestamp, keyTimestamptz:
		if v, ok := timestampKey(text, base.OID == pgtype.TimestamptzOID); ok {
			return sqlcapture.AppendKeyInt(dst, v), nil
		}
	case keyTime:
		if v, ok := timeKey(text); ok {
			return sqlcapture.AppendKeyInt(dst, v), nil
		}
	case keyEnum:
		if order, ok := base.enumOrder[string(text)]; ok {
			return sqlcapture.AppendKeyFloat(dst, float64(order)), nil
		}
		return dst, fmt.Errorf("%q is not a label of enum %s as loaded when the capture started; "+
			"restart the capture to reload the database's types", text, t.Name)
	}
	return dst, t.invalid(text)
}

// KeyParam returns the text of the parameter that KeyParamExpr casts, for a
// key element decoded by sqlcapture.DecodeKey from an encoding that
// AppendKey built.
func (t *Type) KeyParam(elem any) (string, error) {
	base := t.resolve()
	switch t.keyKind() {
	case keyText, keyString:
		if v, ok := elem.(string); ok {
			return v, nil
		}
	case keyInt:
		if v, ok := elem.(int64); ok {
			return strconv.FormatInt(v, 10), nil
		}
	case keyBool:
		if v, ok := elem.(bool); ok {
			return strconv.FormatBool(v), nil
		}
	case keyFloat:
		if v, ok := elem.(float64); ok {
			return formatFloat(v, floatBits(base)), nil
		}
	case keyDecimal:
		if v, ok := elem.(sqlcapture.Decimal); ok {
			return string(v), nil
		}
	case keyBytea:
		if v, ok := elem.([]byte); ok {
			return `\x` + hex.EncodeToString(v), nil
		}
	case keyUUID:
		if v, ok := elem.([]byte); ok && len(v) == 16 {
			return formatUUID(v), nil
		}
	case keyDate:
		if v, ok := elem.(int64); ok {
			return formatDate(v), nil
		}
	case keyTimestamp, keyTimestamptz:
		if v, ok := elem.(int64); ok {
			return formatTimestamp(v, base.OID == pgtype.TimestamptzOID), nil
		}
	case keyTime:
		if v, ok := elem.(int64); ok && v >= 0 && v <= microsPerDay {
			return formatTime(v), nil
		}
	case keyEnum:
		if v, ok := elem.(float64); ok {
			for i, order := range base.EnumSortOrder {
				if float64(order) == v {
					return base.EnumLabels[i], nil
				}
			}
			return "", fmt.Errorf("enum %s has no label with sort order %v any more; "+
				"the enum was changed in a way that requires backfilling the table again", t.Name, v)
		}
	}
	return "", fmt.Errorf("key element %v (%T) is not a key of type %s; was the column's type changed?", elem, elem, t.Name)
}

// parseInt parses a decimal int64 without allocating.
func parseInt(s []byte) (int64, bool) {
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 19 || digits(s) != len(s) {
		return 0, false
	}
	var u uint64
	for _, c := range s {
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), true // for 1<<63, int64(u) wraps to MinInt64, its own negation
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

// floatBits returns the precision of a float4 or float8 type, for parsing
// and printing its values exactly.
func floatBits(base *Type) int {
	if base.OID == pgtype.Float4OID {
		return 32
	}
	return 64
}

func formatFloat(v float64, bitSize int) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "Infinity"
	case math.IsInf(v, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(v, 'g', -1, bitSize)
}

// parseUUID decodes the canonical text form of a UUID, as PostgreSQL prints
// it, into dst.
func parseUUID(dst []byte, s []byte) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	j := 0
	for i := 0; i < len(s); i += 2 {
		if s[i] == '-' {
			i--
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[j] = hi<<4 | lo
		j++
	}
	return j == 16
}

func fromHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// AsKey returns the type whose JSON form a key column's document value
// takes. A Flow collection key must be a string, integer or boolean, so a
// type whose JSON form is a number, an array or any JSON value (floats, json,
// jsonb, arrays) is emitted as its text output in a string instead: "1.5",
// "NaN". Other types are returned as they are.
func (t *Type) AsKey() *Type {
	switch t.resolve().codec {
	case codecFloat, codecJSON, codecArray:
		c := *t
		c.codec, c.asText = codecText, true
		return &c
	}
	return t
}
