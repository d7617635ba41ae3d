package pgtypes

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Estuary's source-postgres checkpoints a backfill's position as the key
// values of the last row it read, each a tuple element of a type chosen by
// the column's PostgreSQL type. EstuaryKeyText turns such an element back
// into the column's text output, from which AppendKey builds this
// connector's key, so that the backfill resumes where Estuary's stopped.

// EstuaryNumeric is the nested tuple by which Estuary encodes a numeric key:
// ("N", (exponent, digits), PostgreSQL's binary numeric). Only the binary
// form is needed to recover the value.
type EstuaryNumeric struct{ Binary []byte }

// ResumesEstuaryOrder reports whether rows ordered by KeyOrderExpr (with
// the column's collation, bytewise or not) come in the same order as
// Estuary's backfill read them: by the column's native order. Only then
// does "after the checkpointed key" select the rows Estuary had not read
// yet. Text in a collation other than C does not qualify: this connector
// reads it in byte order.
func (t *Type) ResumesEstuaryOrder(bytewiseCollation bool) bool {
	switch t.keyKind() {
	case keyInt, keyBool, keyFloat, keyDecimal, keyBytea, keyUUID, keyDate, keyTimestamp, keyTimestamptz, keyEnum:
		return true
	case keyString:
		return bytewiseCollation
	}
	return false
}

// estuaryTimeLayout is the layout of Estuary's date and timestamp keys.
const estuaryTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// EstuaryKeyText returns the text output of the value that elem, an element
// of an Estuary backfill position, encodes for a column of type t.
func (t *Type) EstuaryKeyText(elem any) (string, error) {
	base := t.resolve()
	switch v := elem.(type) {
	case int64:
		switch t.keyKind() {
		case keyInt, keyDecimal:
			return strconv.FormatInt(v, 10), nil
		}
	case uint64:
		if t.keyKind() == keyInt {
			return strconv.FormatUint(v, 10), nil
		}
	case bool:
		if t.keyKind() == keyBool {
			return map[bool]string{true: "t", false: "f"}[v], nil
		}
	case float32:
		if t.keyKind() == keyFloat {
			return formatFloat(float64(v), 32), nil
		}
	case float64:
		if t.keyKind() == keyFloat {
			return formatFloat(v, floatBits(base)), nil
		}
	case []byte:
		if t.keyKind() == keyBytea {
			return `\x` + hex.EncodeToString(v), nil
		}
	case EstuaryNumeric:
		if t.keyKind() == keyDecimal {
			return numericBinaryText(v.Binary)
		}
	case string:
		switch t.keyKind() {
		case keyString, keyEnum, keyUUID:
			return v, nil
		case keyDate, keyTimestamp, keyTimestamptz:
			ts, err := time.Parse(estuaryTimeLayout, v)
			if err != nil {
				return "", fmt.Errorf("key value %q of type %s: %w", v, t.Name, err)
			}
			us := ts.UnixMicro() - pgEpochUnixMicros
			if t.keyKind() == keyDate {
				return formatDate(floorDiv(us, microsPerDay)), nil
			}
			return formatTimestamp(us, base.OID == pgtype.TimestamptzOID), nil
		}
	}
	return "", fmt.Errorf("key value %v (%T) is not one Estuary's connector writes for type %s", elem, elem, t.Name)
}

// pgEpochUnixMicros is 2000-01-01T00:00:00Z in Unix microseconds.
const pgEpochUnixMicros = 946684800 * 1000000

// numericBinaryText renders PostgreSQL's binary numeric (numeric_send):
// ndigits, weight, sign and dscale as 16-bit integers, then ndigits
// base-10000 digits, the first weighing 10000^weight.
func numericBinaryText(b []byte) (string, error) {
	if len(b) < 8 {
		return "", fmt.Errorf("binary numeric of %d bytes", len(b))
	}
	ndigits := int(binary.BigEndian.Uint16(b))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(binary.BigEndian.Uint16(b[6:]))
	if len(b) != 8+2*ndigits {
		return "", fmt.Errorf("binary numeric of %d bytes holds %d digits", len(b), ndigits)
	}
	switch sign {
	case 0xc000:
		return "NaN", nil
	case 0xd000:
		return "Infinity", nil
	case 0xf000:
		return "-Infinity", nil
	}
	digit := func(i int) int {
		if i < 0 || i >= ndigits {
			return 0
		}
		return int(binary.BigEndian.Uint16(b[8+2*i:]))
	}
	var sb strings.Builder
	if sign == 0x4000 {
		sb.WriteByte('-')
	}
	if weight < 0 {
		sb.WriteByte('0')
	}
	for i := 0; i <= weight; i++ {
		if i == 0 {
			sb.WriteString(strconv.Itoa(digit(i)))
		} else {
			fmt.Fprintf(&sb, "%04d", digit(i))
		}
	}
	if dscale > 0 {
		var frac strings.Builder
		for i := weight + 1; frac.Len() < dscale; i++ {
			fmt.Fprintf(&frac, "%04d", digit(i))
		}
		sb.WriteByte('.')
		sb.WriteString(frac.String()[:dscale])
	}
	return sb.String(), nil
}
