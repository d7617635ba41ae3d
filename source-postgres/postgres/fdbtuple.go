package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"pgcapture/sqlcapture"
)

// Estuary's source-postgres checkpoints a keyed backfill's position as the
// FoundationDB tuple encoding of the last row's key values. decodeFDBTuple
// reads it, so that a capture switching connectors resumes its backfills
// (estuarystate.go).

// fdbTuple is a nested tuple element.
type fdbTuple []any

// FoundationDB tuple type codes.
const (
	fdbNil      = 0x00
	fdbBytes    = 0x01
	fdbString   = 0x02
	fdbNested   = 0x05
	fdbIntZero  = 0x14
	fdbFloat32  = 0x20
	fdbFloat64  = 0x21
	fdbFalse    = 0x26
	fdbTrue     = 0x27
	fdbUUID     = 0x30
	fdbMaxIntSz = 8
)

var errFDBTruncated = errors.New("truncated tuple")

// decodeFDBTuple decodes a tuple's elements: nil, []byte, string, int64,
// uint64 (beyond int64), float32, float64, bool, [16]byte (UUID) or
// fdbTuple.
func decodeFDBTuple(b []byte) ([]any, error) {
	elems, rest, err := decodeFDBElements(b, false)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes after the tuple", len(rest))
	}
	return elems, nil
}

// decodeFDBElements decodes elements until the end of b or, nested, until
// the terminating 0x00.
func decodeFDBElements(b []byte, nested bool) ([]any, []byte, error) {
	var out []any
	for len(b) > 0 {
		code := b[0]
		b = b[1:]
		switch {
		case code == fdbNil:
			if !nested {
				out = append(out, nil)
				continue
			}
			if len(b) > 0 && b[0] == 0xff { // a nil inside a nested tuple
				out = append(out, nil)
				b = b[1:]
				continue
			}
			return out, b, nil // the end of the nested tuple
		case code == fdbBytes || code == fdbString:
			v, rest, err := sqlcapture.ReadEscaped(b)
			if err != nil {
				return nil, nil, err
			}
			b = rest
			if code == fdbString {
				out = append(out, string(v))
			} else {
				out = append(out, v)
			}
		case code == fdbNested:
			v, rest, err := decodeFDBElements(b, true)
			if err != nil {
				return nil, nil, err
			}
			b = rest
			out = append(out, fdbTuple(v))
		case code >= fdbIntZero-fdbMaxIntSz && code <= fdbIntZero+fdbMaxIntSz:
			n := int(code) - fdbIntZero
			neg := n < 0
			if neg {
				n = -n
			}
			if len(b) < n {
				return nil, nil, errFDBTruncated
			}
			var raw uint64
			for _, c := range b[:n] {
				raw = raw<<8 | uint64(c)
			}
			b = b[n:]
			switch {
			case neg:
				// n bytes of (2^(8n)-1) + v, in wrapping arithmetic.
				mask := uint64(math.MaxUint64)
				if n < 8 {
					mask = 1<<(8*n) - 1
				}
				out = append(out, int64(raw-mask))
			case raw > math.MaxInt64:
				out = append(out, raw)
			default:
				out = append(out, int64(raw))
			}
		case code == fdbFloat32:
			if len(b) < 4 {
				return nil, nil, errFDBTruncated
			}
			bits := binary.BigEndian.Uint32(b)
			b = b[4:]
			if bits&(1<<31) != 0 {
				bits ^= 1 << 31
			} else {
				bits = ^bits
			}
			out = append(out, math.Float32frombits(bits))
		case code == fdbFloat64:
			if len(b) < 8 {
				return nil, nil, errFDBTruncated
			}
			bits := binary.BigEndian.Uint64(b)
			b = b[8:]
			if bits&(1<<63) != 0 {
				bits ^= 1 << 63
			} else {
				bits = ^bits
			}
			out = append(out, math.Float64frombits(bits))
		case code == fdbFalse || code == fdbTrue:
			out = append(out, code == fdbTrue)
		case code == fdbUUID:
			if len(b) < 16 {
				return nil, nil, errFDBTruncated
			}
			var id [16]byte
			copy(id[:], b)
			b = b[16:]
			out = append(out, id)
		default:
			return nil, nil, fmt.Errorf("unsupported tuple type code 0x%02x", code)
		}
	}
	if nested {
		return nil, nil, errFDBTruncated
	}
	return out, b, nil
}
