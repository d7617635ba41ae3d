package postgres

import (
	"encoding/base64"
	"math"
	"reflect"
	"testing"
)

func TestDecodeFDBTuple(t *testing.T) {
	for _, tc := range []struct {
		in   string // base64, as in Estuary's checkpoints, or raw bytes
		raw  []byte
		want []any
	}{
		{in: "AkIAFQQ=", want: []any{"B", int64(4)}},
		{in: "FgPo", want: []any{int64(1000)}},
		{in: "AmFjbWUAFQc=", want: []any{"acme", int64(7)}},
		{raw: []byte{0x14}, want: []any{int64(0)}},
		{raw: []byte{0x13, 0xfe}, want: []any{int64(-1)}},
		{raw: []byte{0x12, 0xfe, 0xff}, want: []any{int64(-256)}},
		{raw: []byte{0x0c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, want: []any{int64(math.MinInt64)}},
		{raw: []byte{0x1c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, want: []any{uint64(math.MaxUint64)}},
		{raw: []byte{0x01, 'a', 0x00, 0xff, 'b', 0x00}, want: []any{[]byte{'a', 0, 'b'}}},
		{raw: []byte{0x26, 0x27, 0x00}, want: []any{false, true, nil}},
		{raw: []byte{0x21, 0xbf, 0xf8, 0, 0, 0, 0, 0, 0}, want: []any{1.5}},
		{raw: []byte{0x21, 0x40, 0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, want: []any{-1.5}},
		{raw: []byte{0x05, 0x02, 'N', 0x00, 0x05, 0x15, 0x01, 0x00, 0xff, 0x00, 0x01, 0x00, 0xff, 0x00, 0x00},
			want: []any{fdbTuple{"N", fdbTuple{int64(1), nil}, []byte{0}}}},
	} {
		raw := tc.raw
		if tc.in != "" {
			var err error
			if raw, err = base64.StdEncoding.DecodeString(tc.in); err != nil {
				t.Fatal(err)
			}
		}
		got, err := decodeFDBTuple(raw)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("decodeFDBTuple(% x) = %#v, %v; want %#v", raw, got, err, tc.want)
		}
	}
	for _, bad := range [][]byte{{0x02, 'a'}, {0x16, 0x01}, {0x05, 0x14}, {0x99}} {
		if got, err := decodeFDBTuple(bad); err == nil {
			t.Errorf("decodeFDBTuple(% x) = %v, want an error", bad, got)
		}
	}
}
