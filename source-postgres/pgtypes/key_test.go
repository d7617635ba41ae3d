package pgtypes

import (
	"bytes"
	"math"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"pgcapture/sqlcapture"
)

// TestKeyRoundTrip checks that KeyParam inverts AppendKey: the parameter it
// prints is the canonical text of the value whose encoding was decoded.
func TestKeyRoundTrip(t *testing.T) {
	tests := []struct {
		typ       *Type
		in, param string
	}{
		{int8Type, "-9223372036854775808", "-9223372036854775808"},
		{int8Type, "9223372036854775807", "9223372036854775807"},
		{builtin(pgtype.OIDOID, "oid"), "4294967295", "4294967295"},
		{boolType, "t", "true"},
		{float8Type, "-0", "0"},
		{float8Type, "1.2345678901234568e+17", "1.2345678901234568e+17"},
		{float8Type, "NaN", "NaN"},
		{float8Type, "-Infinity", "-Infinity"},
		{float4Type, "1.1", "1.1"},
		{float4Type, "3.4028235e+38", "3.4028235e+38"},
		{numericType, "1.50", "1.5"},
		{numericType, "-0.001", "-0.001"},
		{numericType, "NaN", "NaN"},
		{numericType, "0.000", "0"},
		{byteaType, `\x00ff`, `\x00ff`},
		{byteaType, `\x`, `\x`},
		{uuidType, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{dateType, "2024-02-29", "2024-02-29"},
		{dateType, "0001-01-01 BC", "0001-01-01 BC"},
		{dateType, "4713-11-24 BC", "4713-11-24 BC"},
		{dateType, "5874897-12-31", "5874897-12-31"},
		{dateType, "infinity", "infinity"},
		{dateType, "-infinity", "-infinity"},
		{timestampType, "2024-01-15 14:30:00.5", "2024-01-15 14:30:00.5"},
		{timestampType, "1999-12-31 23:59:59.999999", "1999-12-31 23:59:59.999999"},
		{timestampType, "294276-12-31 23:59:59.999999", "294276-12-31 23:59:59.999999"},
		{timestampType, "4713-11-24 00:00:00 BC", "4713-11-24 00:00:00 BC"},
		{timestamptzType, "2024-01-15 14:30:00+05:30", "2024-01-15 09:00:00+00"},
		{timestamptzType, "-infinity", "-infinity"},
		{timeType, "00:00:00", "00:00:00"},
		{timeType, "24:00:00", "24:00:00"},
		{timeType, "13:14:15.000016", "13:14:15.000016"},
		{textType, "a\x00b", "a\x00b"},
		{bpcharType, "ab  ", "ab"},
		{builtin(pgtype.IntervalOID, "interval"), "P1D", "P1D"},
		{enumType("sad", "ok", "happy"), "ok", "ok"},
		{domainOf(int4Type), "7", "7"},
	}
	for _, tc := range tests {
		key, err := tc.typ.AppendKey(nil, []byte(tc.in))
		if err != nil {
			t.Errorf("%s %q: AppendKey: %v", tc.typ.Name, tc.in, err)
			continue
		}
		elems, err := sqlcapture.DecodeKey(key)
		if err != nil || len(elems) != 1 {
			t.Errorf("%s %q: DecodeKey(%x) = %v, %v", tc.typ.Name, tc.in, key, elems, err)
			continue
		}
		param, err := tc.typ.KeyParam(elems[0])
		if err != nil || param != tc.param {
			t.Errorf("%s %q: KeyParam = %q, %v; want %q", tc.typ.Name, tc.in, param, err, tc.param)
		}
	}
}

// TestKeyOrder checks that encodings order as PostgreSQL orders the values
// (the database-backed test in discovery checks the same against a server).
func TestKeyOrder(t *testing.T) {
	tests := []struct {
		typ    *Type
		values []string // ascending; equal neighbours in one string are not allowed
	}{
		{int8Type, []string{"-9223372036854775808", "-1", "0", "1", "9223372036854775807"}},
		{float8Type, []string{"-Infinity", "-1e+300", "-1", "0", "1e-300", "1", "Infinity", "NaN"}},
		{numericType, []string{"-Infinity", "-100", "-1.5", "-0.001", "0", "0.001", "1.5", "100", "Infinity", "NaN"}},
		{dateType, []string{"-infinity", "4713-01-01 BC", "0001-12-31 BC", "0001-01-01", "1999-12-31", "2000-01-01", "10000-01-01", "infinity"}},
		{timestampType, []string{"-infinity", "0001-01-01 00:00:00 BC", "1969-12-31 23:59:59.999999", "1970-01-01 00:00:00", "2000-01-01 00:00:00.000001", "infinity"}},
		{timestamptzType, []string{"2024-01-15 10:00:00+00", "2024-01-15 15:31:00+05:30", "2024-01-15 09:02:00-01"}},
		{timeType, []string{"00:00:00", "00:00:00.000001", "23:59:59.999999", "24:00:00"}},
		{boolType, []string{"f", "t"}},
		{uuidType, []string{"00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-0000000000ff", "ff000000-0000-0000-0000-000000000000"}},
		{byteaType, []string{`\x`, `\x00`, `\x0000`, `\x01`, `\xff`}},
		{textType, []string{"", "B", "Z", "_x", "a", "e", "é"}},
		{bpcharType, []string{"", "a", "a b", "ab"}},
		{enumType("zzz", "aaa", "mmm"), []string{"zzz", "aaa", "mmm"}},
	}
	for _, tc := range tests {
		var keys [][]byte
		for _, v := range tc.values {
			key, err := tc.typ.AppendKey(nil, []byte(v))
			if err != nil {
				t.Fatalf("%s %q: %v", tc.typ.Name, v, err)
			}
			keys = append(keys, key)
		}
		if !slices.IsSortedFunc(keys, bytes.Compare) {
			t.Errorf("%s: encodings of %q are not in ascending order", tc.typ.Name, tc.values)
		}
		for i := 1; i < len(keys); i++ {
			if bytes.Equal(keys[i-1], keys[i]) {
				t.Errorf("%s: %q and %q encode equally", tc.typ.Name, tc.values[i-1], tc.values[i])
			}
		}
	}
	// Values PostgreSQL considers equal must encode equally.
	for _, eq := range []struct {
		typ  *Type
		a, b string
	}{
		{float8Type, "-0", "0"},
		{numericType, "1.5", "1.50"},
		{bpcharType, "ab", "ab   "},
		{timestamptzType, "2024-01-15 10:00:00+00", "2024-01-15 15:30:00+05:30"},
	} {
		a, _ := eq.typ.AppendKey(nil, []byte(eq.a))
		b, _ := eq.typ.AppendKey(nil, []byte(eq.b))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: %q and %q encode differently", eq.typ.Name, eq.a, eq.b)
		}
	}
}

func TestKeyErrors(t *testing.T) {
	mood := enumType("sad", "ok")
	if _, err := mood.AppendKey(nil, []byte("angry")); err == nil {
		t.Errorf("AppendKey accepted a label the enum does not have")
	}
	if _, err := mood.KeyParam(float64(7)); err == nil {
		t.Errorf("KeyParam accepted a sort order the enum does not have")
	}
	for _, tc := range []struct {
		typ  *Type
		elem any
	}{
		{int8Type, "7"},
		{textType, int64(7)},
		{uuidType, []byte{1, 2}},
		{timeType, int64(-1)},
		{numericType, 1.5},
	} {
		if _, err := tc.typ.KeyParam(tc.elem); err == nil {
			t.Errorf("%s: KeyParam(%#v) succeeded", tc.typ.Name, tc.elem)
		}
	}
	for _, tc := range []struct {
		typ *Type
		in  string
	}{
		{int8Type, "9223372036854775808"},
		{int8Type, "1.5"},
		{float8Type, "x"},
		{uuidType, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"},
		{uuidType, "a0eebc99+9c0b-4ef8-bb6d-6bb9bd380a11"},
		{byteaType, `\x0`},
		{dateType, "2024-01-15 00:00:00"},
	} {
		if _, err := tc.typ.AppendKey(nil, []byte(tc.in)); err == nil {
			t.Errorf("%s: AppendKey(%q) succeeded", tc.typ.Name, tc.in)
		}
	}
}

func TestKeyExprs(t *testing.T) {
	mood := enumType("a")
	tests := []struct {
		typ             *Type
		collation       string
		order, paramExp string
	}{
		{int8Type, "", `"id"`, "$1::int8"},
		{domainOf(int4Type), "", `"id"`, "$1::int4"},
		{textType, "", `"id" COLLATE "C"`, `$1::text COLLATE "C"`},
		{textType, `pg_catalog."default"`, `"id"`, `$1::text COLLATE pg_catalog."default"`},
		{builtin(pgtype.VarcharOID, "varchar"), "", `"id" COLLATE "C"`, `$1::text COLLATE "C"`},
		{bpcharType, "", `"id" COLLATE "C"`, `$1::bpchar COLLATE "C"`},
		{builtin(pgtype.NameOID, "name"), `pg_catalog."C"`, `"id"`, `$1::name COLLATE pg_catalog."C"`},
		{mood, "", `"id"`, `$1::"public"."mood"`},
		{builtin(869, "inet"), `pg_catalog."C"`, `format('%s', "id") COLLATE "C"`, `$1::text COLLATE "C"`},
		{timestamptzType, "", `"id"`, "$1::timestamptz"},
	}
	for _, tc := range tests {
		if got := tc.typ.KeyOrderExpr(`"id"`, tc.collation); got != tc.order {
			t.Errorf("%s: KeyOrderExpr = %s, want %s", tc.typ.Name, got, tc.order)
		}
		if got := tc.typ.KeyParamExpr(1, tc.collation); got != tc.paramExp {
			t.Errorf("%s: KeyParamExpr = %s, want %s", tc.typ.Name, got, tc.paramExp)
		}
	}
}

func TestCivilDays(t *testing.T) {
	for days := int64(-2_500_000); days < 2_500_000; days += 997 {
		y, m, d := civilFromDays(days)
		if got := daysFromCivil(y, m, d); got != days {
			t.Fatalf("daysFromCivil(civilFromDays(%d) = %d-%d-%d) = %d", days, y, m, d, got)
		}
	}
	if got := daysFromCivil(2000, 1, 1); got != pgEpochDays {
		t.Errorf("daysFromCivil(2000-01-01) = %d, want %d", got, pgEpochDays)
	}
	if got := daysFromCivil(0, 3, 1) - daysFromCivil(0, 2, 28); got != 2 {
		t.Errorf("year 0 (1 BC) is a leap year, but February 28 to March 1 is %d days", got)
	}
	if daysFromCivil(294277, 1, 1)-pgEpochDays > math.MaxInt64/microsPerDay {
		t.Errorf("the last timestamp PostgreSQL allows overflows microseconds")
	}
}

func TestEstuaryKeyText(t *testing.T) {
	// numeric_send of 12345.670 (weight 1: 1|2345 . 6700, dscale 3), -0.05
	// (weight -1: 0500, dscale 2) and NaN.
	pos := []byte{0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x2c}
	neg := []byte{0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4}
	nan := []byte{0, 0, 0, 0, 0xc0, 0, 0, 0}
	for _, tc := range []struct {
		typ  *Type
		elem any
		want string
	}{
		{int8Type, int64(-42), "-42"},
		{boolType, true, "t"},
		{float8Type, 1.5, "1.5"},
		{byteaType, []byte{0, 0xff}, `\x00ff`},
		{uuidType, "0e4f6b2c-0000-4000-8000-000000000001", "0e4f6b2c-0000-4000-8000-000000000001"},
		{numericType, EstuaryNumeric{pos}, "12345.670"},
		{numericType, EstuaryNumeric{neg}, "-0.05"},
		{numericType, EstuaryNumeric{nan}, "NaN"},
		{dateType, "2024-01-15T00:00:00.000000000Z", "2024-01-15"},
		{timestamptzType, "2024-01-15T06:30:00.123456000-08:00", "2024-01-15 14:30:00.123456+00"},
	} {
		got, err := tc.typ.EstuaryKeyText(tc.elem)
		if err != nil || got != tc.want {
			t.Errorf("%s %v: %q, %v; want %q", tc.typ.Name, tc.elem, got, err, tc.want)
			continue
		}
		if _, err := tc.typ.AppendKey(nil, []byte(got)); err != nil {
			t.Errorf("%s: AppendKey(%q): %v", tc.typ.Name, got, err)
		}
	}
	if _, err := int8Type.EstuaryKeyText("x"); err == nil {
		t.Error("a string for an int8 key was accepted")
	}
}
