package pgtypes

import (
	"strconv"
	"unicode/utf8"
)

// Encoding holds the choices a capture makes about how values become JSON,
// beyond what the type itself decides.
type Encoding struct {
	// FlattenArrays emits a multidimensional array as one list of its
	// elements in row-major order, as Estuary's connector does by default,
	// rather than nested per dimension.
	FlattenArrays bool
	// TruncateAt, when positive, is the size in bytes past which a value is
	// cut: text to at most TruncateAt bytes (at a character boundary), bytea
	// to TruncateAt bytes, and json or jsonb replaced by
	// {"flow_truncated":true,"original_size":N}.
	TruncateAt int
}

// WithEncoding makes every type of the registry convert values with enc,
// and returns the registry. It is part of loading: call it before the
// registry is used.
func (r *Registry) WithEncoding(enc Encoding) *Registry {
	r.enc = enc
	for _, t := range r.types {
		t.setEncoding(enc)
	}
	return r
}

func (t *Type) setEncoding(enc Encoding) {
	for ; t != nil; t = t.Base {
		t.enc = enc
		if t.Elem != nil {
			t.Elem.setEncoding(enc)
		}
	}
}

// appendTruncated appends an oversized value (longer than TruncateAt) cut
// as Encoding says, and reports false for a type whose values are not cut.
func (t *Type) appendTruncated(dst, text []byte) ([]byte, bool) {
	limit := t.enc.TruncateAt
	switch t.codec {
	case codecText:
		cut := text[:limit]
		// Back off to the start of a character the limit splits.
		for i := len(cut) - 1; i >= 0 && i >= len(cut)-utf8.UTFMax; i-- {
			if utf8.RuneStart(cut[i]) {
				if !utf8.FullRune(cut[i:]) {
					cut = cut[:i]
				}
				break
			}
		}
		return appendString(dst, cut), true
	case codecBytea:
		if len(text) <= 2+2*limit {
			return dst, false
		}
		return appendBytea(dst, text[:2+2*limit])
	case codecJSON:
		dst = append(dst, `{"flow_truncated":true,"original_size":`...)
		dst = strconv.AppendInt(dst, int64(len(text)), 10)
		return append(dst, '}'), true
	}
	return dst, false
}
