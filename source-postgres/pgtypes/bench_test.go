package pgtypes

import (
	"slices"
	"strings"
	"testing"
)

var hotValues = []struct {
	name string
	typ  *Type
	text string
}{
	{"int8", int8Type, "-9223372036854775808"},
	{"numeric", numericType, "-12345678901234567890.123456789"},
	{"text", textType, "The quick brown fox jumps over the lazy dog, twice: The quick brown fox."},
	{"timestamptz", timestamptzType, "2024-01-15 14:30:00.123456+00"},
	{"timestamp", timestampType, "2024-01-15 14:30:00.123456"},
	{"bool", boolType, "t"},
	{"uuid", uuidType, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{"float8", float8Type, "1.2345678901234568e+17"},
	{"date", dateType, "2024-01-15"},
}

// TestAppendJSONDoesNotAllocate guards the hot path: converting the common
// types into a buffer with room must not allocate.
func TestAppendJSONDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1024)
	for _, v := range hotValues {
		text := []byte(v.text)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := v.typ.AppendJSON(buf[:0], text); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("AppendJSON(%s) allocates %v times", v.name, allocs)
		}
	}
}

func TestAppendKeyDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1024)
	for _, v := range []struct {
		typ  *Type
		text string
	}{
		{int8Type, "-9223372036854775808"},
		{textType, "short text"},
		{timestamptzType, "2024-01-15 14:30:00.123456+00"},
		{uuidType, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{float8Type, "1.2345678901234568e+17"},
		{byteaType, `\x0001020304`},
		{enumType("sad", "ok"), "ok"},
	} {
		text := []byte(v.text)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := v.typ.AppendKey(buf[:0], text); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("AppendKey(%s) allocates %v times", v.typ.Name, allocs)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	values := append(slices.Clip(hotValues),
		struct {
			name string
			typ  *Type
			text string
		}{"jsonb", jsonbType, `{"id": 1, "tags": ["a", "b"], "nested": {"x": 1.5, "y": null}}`},
		struct {
			name string
			typ  *Type
			text string
		}{"int4[]", arrayOf(int4Type), "{1,2,3,4,5,6,7,8,9,10}"},
		struct {
			name string
			typ  *Type
			text string
		}{"bytea", byteaType, `\x` + strings.Repeat("0123456789abcdef", 16)},
	)
	for _, v := range values {
		b.Run(v.name, func(b *testing.B) {
			text := []byte(v.text)
			buf := make([]byte, 0, 1024)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = v.typ.AppendJSON(buf[:0], text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendKey(b *testing.B) {
	for _, v := range hotValues {
		b.Run(v.name, func(b *testing.B) {
			text := []byte(v.text)
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = v.typ.AppendKey(buf[:0], text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
