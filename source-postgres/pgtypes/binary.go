package pgtypes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5/pgtype"
)

// Binary values. The replication stream can send columns in their types'
// binary (send) format instead of their text output, which spares the
// server the text formatting, the costliest part of decoding a row for
// types such as timestamps and numerics. A binary value is rewritten here
// into exactly the text PostgreSQL would have printed under SessionParams,
// and then converted by AppendJSON and AppendKey like any text value: the
// one converter stays the only place that decides a document's bytes, and
// a binary value can only ever yield the document its text would.
//
// Only types whose binary format is fixed and fully understood are
// rewritten; BinaryForm says which. A stream must not ask for binary values
// when a column of a captured table has a type for which it says
// BinaryUnsupported: PostgreSQL sends every column whose type has a send
// function in binary, for the whole session.

// BinaryForm tells how a type's binary value relates to its text output.
type BinaryForm uint8

const (
	// BinaryUnsupported: the binary format is not rewritten into text, so
	// the type's values must be received as text.
	BinaryUnsupported BinaryForm = iota
	// BinaryIsText: the binary value is the text output itself (text,
	// varchar, char(n), name, json, enum labels).
	BinaryIsText
	// BinaryRewritten: AppendBinaryText rewrites the value into its text.
	BinaryRewritten
)

// BinaryForm says how the type's binary values become text. Domains take
// their base type's form, since their values are sent as the base type's.
func (t *Type) BinaryForm() BinaryForm {
	t = t.resolve()
	switch t.Kind {
	case KindEnum:
		return BinaryIsText // enum_send sends the label
	case KindBase:
	default:
		return BinaryUnsupported
	}
	if t.Namespace != "pg_catalog" {
		return BinaryUnsupported // an extension's type: its format is its own
	}
	switch t.OID {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.JSONOID:
		return BinaryIsText
	case pgtype.BoolOID, pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID,
		pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID, pgtype.JSONBOID,
		pgtype.UUIDOID, pgtype.ByteaOID, pgtype.DateOID, pgtype.TimeOID, pgtype.TimetzOID,
		pgtype.TimestampOID, pgtype.TimestamptzOID:
		return BinaryRewritten
	}
	return BinaryUnsupported
}

var errBinaryLength = errors.New("wrong length")

// AppendBinaryText appends the text output of a value given in the type's
// binary format. It is an error to call it for a type whose BinaryForm is
// not BinaryRewritten, or with a value that is not of the type.
func (t *Type) AppendBinaryText(dst, src []byte) ([]byte, error) {
	base := t.resolve()
	out, err := base.appendBinaryText(dst, src)
	if err != nil {
		return dst, fmt.Errorf("invalid binary %s value (%d bytes): %w", t.Name, len(src), err)
	}
	return out, nil
}

func (t *Type) appendBinaryText(dst, src []byte) ([]byte, error) {
	fixed := func(n int) error {
		if len(src) != n {
			return errBinaryLength
		}
		return nil
	}
	switch t.OID {
	case pgtype.BoolOID:
		if err := fixed(1); err != nil {
			return dst, err
		}
		if src[0] != 0 {
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	case pgtype.Int2OID:
		if err := fixed(2); err != nil {
			return dst, err
		}
		return strconv.AppendInt(dst, int64(int16(binary.BigEndian.Uint16(src))), 10), nil
	case pgtype.Int4OID:
		if err := fixed(4); err != nil {
			return dst, err
		}
		return strconv.AppendInt(dst, int64(int32(binary.BigEndian.Uint32(src))), 10), nil
	case pgtype.Int8OID:
		if err := fixed(8); err != nil {
			return dst, err
		}
		return strconv.AppendInt(dst, int64(binary.BigEndian.Uint64(src)), 10), nil
	case pgtype.OIDOID:
		if err := fixed(4); err != nil {
			return dst, err
		}
		return strconv.AppendUint(dst, uint64(binary.BigEndian.Uint32(src)), 10), nil
	case pgtype.Float4OID:
		if err := fixed(4); err != nil {
			return dst, err
		}
		return appendFloatText(dst, float64(math.Float32frombits(binary.BigEndian.Uint32(src))), 32), nil
	case pgtype.Float8OID:
		if err := fixed(8); err != nil {
			return dst, err
		}
		return appendFloatText(dst, math.Float64frombits(binary.BigEndian.Uint64(src)), 64), nil
	case pgtype.NumericOID:
		return appendNumericText(dst, src)
	case pgtype.JSONBOID:
		// A version byte, 1 (the only one there is), then the text.
		if len(src) < 1 || src[0] != 1 {
			return dst, errors.New("unknown jsonb version")
		}
		return append(dst, src[1:]...), nil
	case pgtype.UUIDOID:
		if err := fixed(16); err != nil {
			return dst, err
		}
		return appendUUIDText(dst, src), nil
	case pgtype.ByteaOID:
		return appendByteaText(dst, src), nil
	case pgtype.DateOID:
		if err := fixed(4); err != nil {
			return dst, err
		}
		return appendDateText(dst, int32(binary.BigEndian.Uint32(src))), nil
	case pgtype.TimeOID:
		if err := fixed(8); err != nil {
			return dst, err
		}
		return appendClockText(dst, int64(binary.BigEndian.Uint64(src))), nil
	case pgtype.TimetzOID:
		if err := fixed(12); err != nil {
			return dst, err
		}
		dst = appendClockText(dst, int64(binary.BigEndian.Uint64(src)))
		return appendZoneText(dst, int32(binary.BigEndian.Uint32(src[8:]))), nil
	case pgtype.TimestampOID, pgtype.TimestamptzOID:
		if err := fixed(8); err != nil {
			return dst, err
		}
		return appendTimestampText(dst, int64(binary.BigEndian.Uint64(src)), t.OID == pgtype.TimestamptzOID), nil
	}
	return dst, errors.New("the type has no binary rewriting")
}

const hexDigits = "0123456789abcdef"

// appendFloatText prints a float as float4out and float8out do with
// extra_float_digits above 0: the shortest digits that read back exactly
// (which strconv finds too), laid out in fixed notation for decimal
// exponents from -4 up to 14 (float8) or 5 (float4), and otherwise as
// d.ddde+XX with at least two exponent digits.
func appendFloatText(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	case f == 0:
		if math.Signbit(f) {
			return append(dst, "-0"...)
		}
		return append(dst, '0')
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, bits) // -d.ddde±XX
	neg := e[0] == '-'
	if neg {
		e = e[1:]
		dst = append(dst, '-')
	}
	var digits [24]byte
	nd := 0
	i := 0
	for ; e[i] != 'e'; i++ {
		if e[i] != '.' {
			digits[nd] = e[i]
			nd++
		}
	}
	exp, _ := strconv.Atoi(string(e[i+1:]))
	maxFixed := 15
	if bits == 32 {
		maxFixed = 6
	}
	d := digits[:nd]
	switch {
	case exp >= 0 && exp < maxFixed:
		if nd <= exp+1 {
			dst = append(dst, d...)
			for k := nd; k <= exp; k++ {
				dst = append(dst, '0')
			}
			return dst
		}
		dst = append(dst, d[:exp+1]...)
		dst = append(dst, '.')
		return append(dst, d[exp+1:]...)
	case exp < 0 && exp >= -4:
		dst = append(dst, '0', '.')
		for k := -1; k > exp; k-- {
			dst = append(dst, '0')
		}
		return append(dst, d...)
	}
	dst = append(dst, d[0])
	if nd > 1 {
		dst = append(dst, '.')
		dst = append(dst, d[1:]...)
	}
	dst = append(dst, 'e')
	if exp < 0 {
		dst = append(dst, '-')
		exp = -exp
	} else {
		dst = append(dst, '+')
	}
	if exp < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(exp), 10)
}

// Signs of a binary numeric.
const (
	numericPos  = 0x0000
	numericNeg  = 0x4000
	numericNaN  = 0xC000
	numericPInf = 0xD000
	numericNInf = 0xF000
)

// appendNumericText prints a binary numeric as numeric_out does: its base
// 10000 digits, the integer part without leading zeros ("0" if none), and
// exactly dscale fraction digits.
func appendNumericText(dst, src []byte) ([]byte, error) {
	if len(src) < 8 {
		return dst, errBinaryLength
	}
	ndigits := int(int16(binary.BigEndian.Uint16(src)))
	weight := int(int16(binary.BigEndian.Uint16(src[2:])))
	sign := binary.BigEndian.Uint16(src[4:])
	dscale := int(int16(binary.BigEndian.Uint16(src[6:])))
	if ndigits < 0 || dscale < 0 || len(src) != 8+2*ndigits {
		return dst, errBinaryLength
	}
	switch sign {
	case numericNaN:
		return append(dst, "NaN"...), nil
	case numericPInf:
		return append(dst, "Infinity"...), nil
	case numericNInf:
		return append(dst, "-Infinity"...), nil
	case numericNeg:
		dst = append(dst, '-')
	case numericPos:
	default:
		return dst, fmt.Errorf("unknown numeric sign %#x", sign)
	}
	digit := func(i int) int {
		if i < 0 || i >= ndigits {
			return 0
		}
		return int(binary.BigEndian.Uint16(src[8+2*i:]))
	}
	if weight < 0 {
		dst = append(dst, '0')
	} else {
		for i := 0; i <= weight; i++ {
			d := digit(i)
			if d > 9999 {
				return dst, fmt.Errorf("numeric digit %d out of range", d)
			}
			if i == 0 {
				dst = strconv.AppendInt(dst, int64(d), 10)
				continue
			}
			dst = append(dst, byte('0'+d/1000), byte('0'+d/100%10), byte('0'+d/10%10), byte('0'+d%10))
		}
	}
	if dscale == 0 {
		return dst, nil
	}
	dst = append(dst, '.')
	for i, left := weight+1, dscale; left > 0; i++ {
		d := digit(i)
		if d > 9999 {
			return dst, fmt.Errorf("numeric digit %d out of range", d)
		}
		four := [4]byte{byte('0' + d/1000), byte('0' + d/100%10), byte('0' + d/10%10), byte('0' + d%10)}
		n := min(left, 4)
		dst = append(dst, four[:n]...)
		left -= n
	}
	return dst, nil
}

func appendUUIDText(dst, src []byte) []byte {
	for i, b := range src {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// appendByteaText prints bytes as bytea_output hex does: \x and two lower
// case hex digits a byte.
func appendByteaText(dst, src []byte) []byte {
	dst = append(dst, '\\', 'x')
	for _, b := range src {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// appendDateText prints days since 2000-01-01 as date_out does under
// DateStyle ISO.
func appendDateText(dst []byte, days int32) []byte {
	switch days {
	case math.MinInt32:
		return append(dst, "-infinity"...)
	case math.MaxInt32:
		return append(dst, "infinity"...)
	}
	year, month, day := civilFromDays(int64(days) + pgEpochDays)
	dst, bc := appendISODate(dst, year, month, day)
	if bc {
		dst = append(dst, " BC"...)
	}
	return dst
}

// appendISODate prints YYYY-MM-DD, the year with at least four digits and,
// before year 1, in the BC era (year 0 is 1 BC); it reports the latter.
func appendISODate(dst []byte, year int64, month, day int) ([]byte, bool) {
	bc := year <= 0
	if bc {
		year = 1 - year
	}
	for p := int64(1000); p > 1 && year < p; p /= 10 {
		dst = append(dst, '0')
	}
	dst = strconv.AppendInt(dst, year, 10)
	dst = append(dst, '-', byte('0'+month/10), byte('0'+month%10), '-', byte('0'+day/10), byte('0'+day%10))
	return dst, bc
}

// appendClockText prints microseconds since midnight as HH:MM:SS with the
// fraction's trailing zeros dropped, as time_out does (24:00:00 included).
func appendClockText(dst []byte, us int64) []byte {
	micros := us % microsPerSecond
	s := us / microsPerSecond
	h, m, sec := s/3600, s/60%60, s%60
	if h < 10 {
		dst = append(dst, '0')
	}
	dst = strconv.AppendInt(dst, h, 10)
	dst = append(dst, ':', byte('0'+m/10), byte('0'+m%10), ':', byte('0'+sec/10), byte('0'+sec%10))
	if micros == 0 {
		return dst
	}
	var frac [6]byte
	for i := 5; i >= 0; i-- {
		frac[i] = byte('0' + micros%10)
		micros /= 10
	}
	n := 6
	for frac[n-1] == '0' {
		n--
	}
	dst = append(dst, '.')
	return append(dst, frac[:n]...)
}

// appendZoneText prints a zone given in seconds west of UTC, as PostgreSQL
// prints an offset: +HH, +HH:MM when there are minutes, +HH:MM:SS when
// there are seconds.
func appendZoneText(dst []byte, west int32) []byte {
	sign := byte('+')
	if west > 0 {
		sign = '-'
	}
	s := int64(west)
	if s < 0 {
		s = -s
	}
	h, m, sec := s/3600, s/60%60, s%60
	dst = append(dst, sign)
	if h < 10 {
		dst = append(dst, '0')
	}
	dst = strconv.AppendInt(dst, h, 10)
	if m != 0 || sec != 0 {
		dst = append(dst, ':', byte('0'+m/10), byte('0'+m%10))
	}
	if sec != 0 {
		dst = append(dst, ':', byte('0'+sec/10), byte('0'+sec%10))
	}
	return dst
}

// appendTimestampText prints microseconds since 2000-01-01 as timestamp_out
// and timestamptz_out do under DateStyle ISO and TimeZone UTC:
// "2024-01-15 14:30:00.5", with "+00" for timestamptz, " BC" last.
func appendTimestampText(dst []byte, us int64, withZone bool) []byte {
	switch us {
	case math.MinInt64:
		return append(dst, "-infinity"...)
	case math.MaxInt64:
		return append(dst, "infinity"...)
	}
	days := floorDiv(us, microsPerDay)
	year, month, day := civilFromDays(days + pgEpochDays)
	dst, bc := appendISODate(dst, year, month, day)
	dst = append(dst, ' ')
	dst = appendClockText(dst, us-days*microsPerDay)
	if withZone {
		dst = append(dst, '+', '0', '0')
	}
	if bc {
		dst = append(dst, " BC"...)
	}
	return dst
}
