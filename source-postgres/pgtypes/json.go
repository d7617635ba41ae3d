package pgtypes

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"unicode/utf8"
)

// AppendJSON appends the JSON form of a value to dst, given the value's
// PostgreSQL text output. text is never SQL NULL: the caller writes null
// itself. The output never contains a raw newline and is always valid JSON;
// on error dst may hold a partial value and should be discarded.
func (t *Type) AppendJSON(dst, text []byte) ([]byte, error) {
	if t.enc.TruncateAt > 0 && len(text) > t.enc.TruncateAt && !t.asText {
		if out, ok := t.appendTruncated(dst, text); ok {
			return out, nil
		}
	}
	switch t.codec {
	case codecText:
		return appendString(dst, text), nil
	case codecBool:
		switch string(text) {
		case "t":
			return append(dst, "true"...), nil
		case "f":
			return append(dst, "false"...), nil
		}
	case codecInt:
		if isJSONInteger(text) {
			return append(dst, text...), nil
		}
	case codecFloat:
		switch string(text) {
		case "NaN", "Infinity", "-Infinity":
			return appendString(dst, text), nil
		}
		if isJSONNumber(text) {
			return append(dst, text...), nil
		}
	case codecBytea:
		if out, ok := appendBytea(dst, text); ok {
			return out, nil
		}
	case codecJSON:
		if out, ok := appendCompactJSON(dst, text); ok {
			return out, nil
		}
	case codecDate:
		if out, ok := appendDateJSON(dst, text); ok {
			return out, nil
		}
	case codecTime:
		if out, ok := appendTimeJSON(dst, text, false); ok {
			return out, nil
		}
	case codecTimetz:
		if out, ok := appendTimeJSON(dst, text, true); ok {
			return out, nil
		}
	case codecTimestamp:
		if out, ok := appendTimestampJSON(dst, text, false); ok {
			return out, nil
		}
	case codecTimestamptz:
		if out, ok := appendTimestampJSON(dst, text, true); ok {
			return out, nil
		}
	case codecArray:
		return t.appendArrayJSON(dst, text)
	case codecDomain:
		return t.Base.AppendJSON(dst, text)
	}
	return dst, t.invalid(text)
}

// invalid reports text that is not the text output of t, which means the
// session parameters were not applied or the value is not of type t.
func (t *Type) invalid(text []byte) error {
	const max = 64
	if len(text) > max {
		return fmt.Errorf("invalid %s value %q... (%d bytes); are the session parameters set?", t.Name, text[:max], len(text))
	}
	return fmt.Errorf("invalid %s value %q; are the session parameters set?", t.Name, text)
}

// appendString appends s as a JSON string, replacing invalid UTF-8 by
// U+FFFD.
func appendString(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// isJSONInteger reports whether s is -?(0|[1-9][0-9]*).
func isJSONInteger(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	return len(s) > 0 && digits(s) == len(s) && (s[0] != '0' || len(s) == 1)
}

// isJSONNumber reports whether s is a number in JSON's grammar.
func isJSONNumber(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	n := digits(s)
	if n == 0 || s[0] == '0' && n > 1 {
		return false
	}
	s = s[n:]
	if len(s) > 0 && s[0] == '.' {
		n = digits(s[1:])
		if n == 0 {
			return false
		}
		s = s[1+n:]
	}
	if len(s) > 0 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
			s = s[1:]
		}
		n = digits(s)
		if n == 0 {
			return false
		}
		s = s[n:]
	}
	return len(s) == 0
}

// digits returns the length of the run of ASCII digits that begins s.
func digits(s []byte) int {
	for i, c := range s {
		if c < '0' || c > '9' {
			return i
		}
	}
	return len(s)
}

// byteaHex returns the hex digits of a bytea's text output in hex form
// ("\x00ff"), which the bytea_output of SessionParams makes its only form.
func byteaHex(text []byte) ([]byte, bool) {
	if len(text) < 2 || text[0] != '\\' || text[1] != 'x' || len(text)%2 != 0 {
		return nil, false
	}
	return text[2:], true
}

// appendBytea appends the bytes of a bytea in hex output form ("\x00ff") as
// a base64 JSON string.
func appendBytea(dst, text []byte) ([]byte, bool) {
	text, ok := byteaHex(text)
	if !ok {
		return dst, false
	}
	dst = append(dst, '"')
	// Decode in chunks whose length is a multiple of 3, so that each encodes
	// to base64 without padding and the chunks concatenate.
	var chunk [48]byte
	for len(text) > 0 {
		n := min(len(text)/2, len(chunk))
		if _, err := hex.Decode(chunk[:n], text[:2*n]); err != nil {
			return dst, false
		}
		dst = base64.StdEncoding.AppendEncode(dst, chunk[:n])
		text = text[2*n:]
	}
	return append(dst, '"'), true
}

// appendCompactJSON appends a JSON text without the whitespace between its
// tokens. Inside strings it replaces invalid UTF-8 and unpaired surrogate
// escapes by U+FFFD, which strict parsers would otherwise reject.
//
// PostgreSQL validates json and jsonb values on input and prints jsonb
// canonically, so a full grammar check of every value would be wasted; the
// single pass checks structure instead (strings closed, brackets balanced,
// something there at all), which is what a damaged value would break, and
// reports false for the caller's fallback.
func appendCompactJSON(dst, text []byte) ([]byte, bool) {
	start := len(dst)
	var stack []byte // open brackets beyond the fixed array, rarely used
	var fixed [32]byte
	depth := 0
	for i := 0; i < len(text); {
		c := text[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		case '"':
			var end int
			var closed bool
			dst, end, closed = appendJSONStringToken(dst, text[i:])
			if !closed {
				return dst[:start], false
			}
			i += end
			continue
		case '{', '[':
			if depth < len(fixed) {
				fixed[depth] = c
			} else {
				stack = append(stack, c)
			}
			depth++
		case '}', ']':
			if depth == 0 {
				return dst[:start], false
			}
			depth--
			open := byte(0)
			if depth < len(fixed) {
				open = fixed[depth]
			} else {
				open, stack = stack[len(stack)-1], stack[:len(stack)-1]
			}
			if open+2 != c { // '{'+2 == '}', '['+2 == ']'
				return dst[:start], false
			}
		}
		dst = append(dst, c)
		i++
	}
	if depth != 0 || len(dst) == start {
		return dst[:start], false
	}
	return dst, true
}

// appendJSONStringToken copies the string token that begins s, sanitized,
// and returns the token's length.
func appendJSONStringToken(dst, s []byte) ([]byte, int, bool) {
	dst = append(dst, '"')
	start := 1
	for i := 1; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			return append(append(dst, s[start:i]...), '"'), i + 1, true
		case c == '\\' && i+1 < len(s) && s[i+1] == 'u':
			r, ok := decodeUTF16Escape(s[i:])
			if !ok {
				i += 6
				continue
			}
			if r < 0xd800 || r > 0xdfff {
				i += 6
				continue
			}
			if r <= 0xdbff {
				if lo, ok := decodeUTF16Escape(s[i+6:]); ok && lo >= 0xdc00 && lo <= 0xdfff {
					i += 12
					continue
				}
			}
			dst = append(append(dst, s[start:i]...), `\ufffd`...)
			i += 6
			start = i
		case c == '\\':
			i += 2
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(append(dst, s[start:i]...), "\ufffd"...)
				start = i + 1
			}
			i += size
		default:
			i++
		}
	}
	return dst, len(s), false // the string is never closed
}

// decodeUTF16Escape decodes a \uXXXX escape at the start of s.
func decodeUTF16Escape(s []byte) (rune, bool) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
