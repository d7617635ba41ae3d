package sqlcapture

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// Row keys are tuples encoded so that bytes.Compare on two encodings orders
// them exactly as the tuples order element by element. The engine compares
// keys only in this form, so a Database must query its chunks in the order
// these encodings define (for text: byte order, i.e. COLLATE "C").
//
// Each element starts with a tag byte; variable-length elements are escaped
// and terminated so that no encoding is a prefix of a different one. There is
// no NULL: key columns are a primary key's or a unique index's on NOT NULL
// columns.
const (
	tagBytes   = 0x01
	tagString  = 0x02
	tagInt     = 0x14
	tagFloat   = 0x21
	tagFalse   = 0x26
	tagTrue    = 0x27
	tagDecimal = 0x30
)

// Decimal is a key element holding an exact decimal number in its text form
// ("-12.5", "NaN", "Infinity", "-Infinity"). It orders numerically, with NaN
// above every number, as PostgreSQL orders numeric.
type Decimal string

// AppendKeyInt appends an integer.
func AppendKeyInt(b []byte, v int64) []byte {
	b = append(b, tagInt)
	return binary.BigEndian.AppendUint64(b, uint64(v)^(1<<63))
}

// AppendKeyBool appends a boolean; false orders first.
func AppendKeyBool(b []byte, v bool) []byte {
	if v {
		return append(b, tagTrue)
	}
	return append(b, tagFalse)
}

// AppendKeyFloat appends a float in PostgreSQL's order: -Inf < ... < -0 = 0
// < ... < +Inf < NaN, with every NaN equal.
func AppendKeyFloat(b []byte, v float64) []byte {
	var bits uint64
	switch {
	case math.IsNaN(v):
		bits = math.MaxUint64
	case v == 0:
		bits = 1 << 63 // -0 and +0 are equal
	default:
		bits = math.Float64bits(v)
		if bits&(1<<63) != 0 {
			bits = ^bits
		} else {
			bits |= 1 << 63
		}
	}
	b = append(b, tagFloat)
	return binary.BigEndian.AppendUint64(b, bits)
}

// AppendKeyBytes appends a byte string, ordered bytewise.
func AppendKeyBytes(b []byte, v []byte) []byte {
	return appendEscaped(append(b, tagBytes), v)
}

// AppendKeyString appends a string, ordered by its UTF-8 bytes (which is
// code point order, and PostgreSQL's COLLATE "C" order in a UTF8 database).
func AppendKeyString(b []byte, v string) []byte {
	b = append(b, tagString)
	for i := 0; i < len(v); i++ {
		c := v[i]
		b = append(b, c)
		if c == 0 {
			b = append(b, 0xff)
		}
	}
	return append(b, 0x00)
}

func appendEscaped(b []byte, v []byte) []byte {
	for _, c := range v {
		b = append(b, c)
		if c == 0 {
			b = append(b, 0xff)
		}
	}
	return append(b, 0x00)
}

// Decimal classes, in order.
const (
	decNegInf = 0x01
	decNeg    = 0x02
	decZero   = 0x03
	decPos    = 0x04
	decPosInf = 0x05
	decNaN    = 0x06
)

// AppendKeyDecimal appends an exact decimal given in text form: an optional
// sign, digits with an optional decimal point, and an optional exponent
// ("1.5e3"); or NaN, Infinity, -Infinity.
func AppendKeyDecimal(b []byte, text string) ([]byte, error) {
	b = append(b, tagDecimal)
	switch strings.ToLower(text) {
	case "nan":
		return append(b, decNaN), nil
	case "infinity", "+infinity", "inf":
		return append(b, decPosInf), nil
	case "-infinity", "-inf":
		return append(b, decNegInf), nil
	}
	neg, digits, exp, err := parseDecimal(text)
	if err != nil {
		return nil, err
	}
	if len(digits) == 0 {
		return append(b, decZero), nil
	}
	// value = 0.d1d2d3... × 10^exp, with d1 != 0 and no trailing zeros, so
	// magnitudes order by exponent and then by digits.
	e := uint32(exp) ^ (1 << 31)
	if neg {
		b = append(b, decNeg)
		b = binary.BigEndian.AppendUint32(b, ^e)
		for i := 0; i < len(digits); i++ {
			b = append(b, 0xff-digits[i])
		}
		return append(b, 0xff), nil
	}
	b = append(b, decPos)
	b = binary.BigEndian.AppendUint32(b, e)
	b = append(b, digits...)
	return append(b, 0x00), nil
}

// parseDecimal returns the sign, the significant digits (no leading or
// trailing zeros) and the exponent exp such that |value| = 0.digits × 10^exp.
func parseDecimal(text string) (neg bool, digits []byte, exp int32, err error) {
	s := text
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	var extra int64
	if hasExp {
		if _, err := fmt.Sscanf(expPart, "%d", &extra); err != nil {
			return false, nil, 0, fmt.Errorf("invalid decimal %q", text)
		}
	}
	intPart, fracPart, _ := strings.Cut(mant, ".")
	if intPart == "" && fracPart == "" {
		return false, nil, 0, fmt.Errorf("invalid decimal %q", text)
	}
	all := intPart + fracPart
	for i := 0; i < len(all); i++ {
		if all[i] < '0' || all[i] > '9' {
			return false, nil, 0, fmt.Errorf("invalid decimal %q", text)
		}
	}
	lead := 0
	for lead < len(all) && all[lead] == '0' {
		lead++
	}
	sig := strings.TrimRight(all[lead:], "0")
	if sig == "" {
		return false, nil, 0, nil
	}
	e := int64(len(intPart)) - int64(lead) + extra
	if e > math.MaxInt32/2 || e < math.MinInt32/2 {
		return false, nil, 0, fmt.Errorf("decimal %q is out of range", text)
	}
	return neg, []byte(sig), int32(e), nil
}

// DecodeKey splits an encoded key back into its elements: bool, int64,
// float64, string, []byte or Decimal.
func DecodeKey(key []byte) ([]any, error) {
	var out []any
	for len(key) > 0 {
		tag := key[0]
		key = key[1:]
		switch tag {
		case tagFalse, tagTrue:
			out = append(out, tag == tagTrue)
		case tagInt:
			if len(key) < 8 {
				return nil, errTruncatedKey
			}
			out = append(out, int64(binary.BigEndian.Uint64(key)^(1<<63)))
			key = key[8:]
		case tagFloat:
			if len(key) < 8 {
				return nil, errTruncatedKey
			}
			bits := binary.BigEndian.Uint64(key)
			key = key[8:]
			switch {
			case bits == math.MaxUint64:
				out = append(out, math.NaN())
			case bits&(1<<63) != 0:
				out = append(out, math.Float64frombits(bits&^(1<<63)))
			default:
				out = append(out, math.Float64frombits(^bits))
			}
		case tagBytes, tagString:
			v, rest, err := ReadEscaped(key)
			if err != nil {
				return nil, err
			}
			key = rest
			if tag == tagString {
				out = append(out, string(v))
			} else {
				out = append(out, v)
			}
		case tagDecimal:
			d, rest, err := decodeDecimal(key)
			if err != nil {
				return nil, err
			}
			key = rest
			out = append(out, d)
		default:
			return nil, fmt.Errorf("invalid key element tag 0x%02x", tag)
		}
	}
	return out, nil
}

var errTruncatedKey = fmt.Errorf("truncated key")

// ReadEscaped reads a byte string as keys encode it: terminated by 0x00,
// with a 0x00 inside written as 0x00 0xff (the escaping of FoundationDB's
// tuple layer, whose byte and text strings are read the same way). It
// returns the string and what follows its terminator.
func ReadEscaped(b []byte) (v []byte, rest []byte, err error) {
	v = []byte{}
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			v = append(v, b[i])
			continue
		}
		if i+1 < len(b) && b[i+1] == 0xff {
			v = append(v, 0)
			i++
			continue
		}
		return v, b[i+1:], nil
	}
	return nil, nil, errTruncatedKey
}

func decodeDecimal(b []byte) (Decimal, []byte, error) {
	if len(b) == 0 {
		return "", nil, errTruncatedKey
	}
	class := b[0]
	b = b[1:]
	switch class {
	case decNaN:
		return "NaN", b, nil
	case decPosInf:
		return "Infinity", b, nil
	case decNegInf:
		return "-Infinity", b, nil
	case decZero:
		return "0", b, nil
	case decPos, decNeg:
	default:
		return "", nil, fmt.Errorf("invalid decimal class 0x%02x", class)
	}
	if len(b) < 4 {
		return "", nil, errTruncatedKey
	}
	e := binary.BigEndian.Uint32(b)
	b = b[4:]
	end := byte(0x00)
	if class == decNeg {
		e = ^e
		end = 0xff
	}
	exp := int(int32(e ^ (1 << 31)))
	var digits []byte
	for {
		if len(b) == 0 {
			return "", nil, errTruncatedKey
		}
		c := b[0]
		b = b[1:]
		if c == end {
			break
		}
		if class == decNeg {
			c = 0xff - c
		}
		digits = append(digits, c)
	}
	var sb strings.Builder
	if class == decNeg {
		sb.WriteByte('-')
	}
	switch {
	case exp <= 0:
		sb.WriteString("0.")
		sb.WriteString(strings.Repeat("0", -exp))
		sb.Write(digits)
	case exp >= len(digits):
		sb.Write(digits)
		sb.WriteString(strings.Repeat("0", exp-len(digits)))
	default:
		sb.Write(digits[:exp])
		sb.WriteByte('.')
		sb.Write(digits[exp:])
	}
	return Decimal(sb.String()), b, nil
}
