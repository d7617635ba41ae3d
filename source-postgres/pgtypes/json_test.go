package pgtypes

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// builtin makes a built-in type as LoadRegistry would, for tests that need
// no database.
func builtin(oid uint32, typname string) *Type {
	t := &Type{OID: oid, Name: typname, Namespace: "pg_catalog", Typname: typname, Kind: KindBase, Typmod: -1, codec: codecText}
	if c, ok := builtinCodecs[oid]; ok {
		t.codec = c
	}
	return t
}

func arrayOf(elem *Type) *Type {
	return &Type{Name: elem.Name + "[]", Namespace: "pg_catalog", Typname: "_" + elem.Typname, Kind: KindArray,
		Typmod: -1, Elem: elem, codec: codecArray, delim: ','}
}

func enumType(labels ...string) *Type {
	t := &Type{Name: "mood", Namespace: "public", Typname: "mood", Kind: KindEnum, Typmod: -1,
		EnumLabels: labels, enumOrder: map[string]float32{}}
	for i, l := range labels {
		t.EnumSortOrder = append(t.EnumSortOrder, float32(i+1))
		t.enumOrder[l] = float32(i + 1)
	}
	return t
}

func domainOf(base *Type) *Type {
	return &Type{Name: "dom", Namespace: "public", Typname: "dom", Kind: KindDomain, Typmod: -1, Base: base, codec: codecDomain}
}

var (
	boolType        = builtin(pgtype.BoolOID, "bool")
	int8Type        = builtin(pgtype.Int8OID, "int8")
	int4Type        = builtin(pgtype.Int4OID, "int4")
	float8Type      = builtin(pgtype.Float8OID, "float8")
	float4Type      = builtin(pgtype.Float4OID, "float4")
	numericType     = builtin(pgtype.NumericOID, "numeric")
	textType        = builtin(pgtype.TextOID, "text")
	bpcharType      = builtin(pgtype.BPCharOID, "bpchar")
	byteaType       = builtin(pgtype.ByteaOID, "bytea")
	uuidType        = builtin(pgtype.UUIDOID, "uuid")
	jsonType        = builtin(pgtype.JSONOID, "json")
	jsonbType       = builtin(pgtype.JSONBOID, "jsonb")
	dateType        = builtin(pgtype.DateOID, "date")
	timeType        = builtin(pgtype.TimeOID, "time")
	timetzType      = builtin(pgtype.TimetzOID, "timetz")
	timestampType   = builtin(pgtype.TimestampOID, "timestamp")
	timestamptzType = builtin(pgtype.TimestamptzOID, "timestamptz")
)

func TestAppendJSON(t *testing.T) {
	boxArray := arrayOf(builtin(603, "box"))
	boxArray.delim = ';'
	tests := []struct {
		typ  *Type
		in   string
		want string
	}{
		{boolType, "t", `true`},
		{boolType, "f", `false`},
		{int8Type, "-9223372036854775808", `-9223372036854775808`},
		{int4Type, "0", `0`},
		{numericType, "-12.500", `"-12.500"`},
		{numericType, "NaN", `"NaN"`},
		{numericType, "-Infinity", `"-Infinity"`},
		{float8Type, "1.5", `1.5`},
		{float8Type, "-0", `-0`},
		{float8Type, "1e+300", `1e+300`},
		{float8Type, "1.2345678901234568e-07", `1.2345678901234568e-07`},
		{float8Type, "NaN", `"NaN"`},
		{float4Type, "Infinity", `"Infinity"`},
		{float4Type, "-Infinity", `"-Infinity"`},
		{textType, "plain", `"plain"`},
		{textType, "", `""`},
		{textType, "quote\" back\\ nl\n tab\t cr\r bell\x07 é 😀", `"quote\" back\\ nl\n tab\t cr\r bell\u0007 é 😀"`},
		{textType, "bad \xff utf8 \xe2\x82", `"bad ` + "\ufffd" + ` utf8 ` + "\ufffd\ufffd" + `"`},
		{bpcharType, "ab  ", `"ab  "`},
		{byteaType, `\x`, `""`},
		{byteaType, `\x00ff10`, `"AP8Q"`},
		{byteaType, `\x` + strings.Repeat("00", 100), `"` + strings.Repeat("A", 132) + `AA=="`},
		{uuidType, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{jsonType, "{\"a\" : 1,\n  \"b\": [1, 2, \"x y\"] }", `{"a":1,"b":[1,2,"x y"]}`},
		{jsonType, `"\ud83d\ude00 \ud800 \udc00x"`, `"\ud83d\ude00 \ufffd \ufffdx"`},
		{jsonType, "\"\xff\"", "\"\ufffd\""},
		{jsonType, "null", `null`},
		{jsonbType, `{"a": 1, "b": [1, 2]}`, `{"a":1,"b":[1,2]}`},
		{dateType, "2024-01-15", `"2024-01-15"`},
		{dateType, "infinity", `"9999-12-31"`},
		{dateType, "-infinity", `"0001-01-01"`},
		{dateType, "0044-03-15 BC", `"0001-01-01"`},
		{dateType, "10000-01-01", `"9999-12-31"`},
		{timeType, "14:30:00", `"14:30:00Z"`},
		{timeType, "14:30:00.5", `"14:30:00.5Z"`},
		{timeType, "24:00:00", `"23:59:59.999999Z"`},
		{timetzType, "14:30:00.123+05:30", `"14:30:00.123+05:30"`},
		{timetzType, "14:30:00-08", `"14:30:00-08:00"`},
		{timetzType, "14:30:00+00", `"14:30:00Z"`},
		{timetzType, "00:10:00+00:00:15", `"00:09:45Z"`},
		{timetzType, "00:00:10-00:00:15", `"00:00:25Z"`},
		{timestampType, "2024-01-15 14:30:00", `"2024-01-15T14:30:00Z"`},
		{timestampType, "2024-01-15 14:30:00.1234", `"2024-01-15T14:30:00.1234Z"`},
		{timestampType, "0044-03-15 12:00:00 BC", `"0001-01-01T00:00:00Z"`},
		{timestampType, "infinity", `"9999-12-31T23:59:59.999999Z"`},
		{timestampType, "-infinity", `"0001-01-01T00:00:00Z"`},
		{timestamptzType, "2024-01-15 14:30:00.123456+00", `"2024-01-15T14:30:00.123456Z"`},
		{timestamptzType, "2024-01-01 01:30:00+05:30", `"2023-12-31T20:00:00Z"`},
		{timestamptzType, "2024-02-29 23:00:00-01", `"2024-03-01T00:00:00Z"`},
		{timestamptzType, "10000-01-01 00:00:00+00", `"9999-12-31T23:59:59.999999Z"`},
		{timestamptzType, "0001-01-01 00:30:00+01", `"0001-01-01T00:00:00Z"`},
		{arrayOf(int4Type), "{}", `[]`},
		{arrayOf(int4Type), "{1,NULL,-3}", `[1,null,-3]`},
		{arrayOf(int4Type), "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{arrayOf(int4Type), "[0:1]={7,8}", `[7,8]`},
		{arrayOf(int4Type), "[0:1][1:1]={{7},{8}}", `[[7],[8]]`},
		{arrayOf(textType), `{"a b","c\"d","e\\f","NULL",null,"",x}`, `["a b","c\"d","e\\f","NULL",null,"","x"]`},
		{arrayOf(textType), `{"{}","a,b"}`, `["{}","a,b"]`},
		{arrayOf(float8Type), `{NaN,1.5,-Infinity}`, `["NaN",1.5,"-Infinity"]`},
		{arrayOf(jsonbType), `{"{\"a\": [1, 2]}",null}`, `[{"a":[1,2]},null]`},
		{arrayOf(timestamptzType), `{"2024-01-15 14:30:00+00",infinity}`, `["2024-01-15T14:30:00Z","9999-12-31T23:59:59.999999Z"]`},
		{arrayOf(domainOf(boolType)), `{t,f}`, `[true,false]`},
		{boxArray, `{(3,4),(1,2);(1,1),(0,0)}`, `["(3,4),(1,2)","(1,1),(0,0)"]`},
		{domainOf(int8Type), "42", `42`},
		{domainOf(arrayOf(int8Type)), "{42}", `[42]`},
		{enumType("sad", "ok"), "ok", `"ok"`},
		{&Type{Name: "unknown", codec: codecText}, "(1,\"a b\")", `"(1,\"a b\")"`},
	}
	for _, tc := range tests {
		got, err := tc.typ.AppendJSON([]byte("prefix:"), []byte(tc.in))
		if err != nil {
			t.Errorf("%s %q: %v", tc.typ.Name, tc.in, err)
			continue
		}
		if !strings.HasPrefix(string(got), "prefix:") {
			t.Errorf("%s %q: output %q does not extend dst", tc.typ.Name, tc.in, got)
			continue
		}
		got = got[len("prefix:"):]
		if string(got) != tc.want {
			t.Errorf("%s %q: got %s, want %s", tc.typ.Name, tc.in, got, tc.want)
		}
		if !json.Valid(got) || strings.ContainsAny(string(got), "\n\r") {
			t.Errorf("%s %q: output %q is not single-line valid JSON", tc.typ.Name, tc.in, got)
		}
	}
}

func TestAppendJSONRejectsMalformedText(t *testing.T) {
	tests := []struct {
		typ *Type
		in  string
	}{
		{boolType, "true"},
		{int8Type, ""},
		{int8Type, "12a"},
		{int8Type, "007"},
		{float8Type, "1.5.5"},
		{float8Type, "inf"},
		{byteaType, `\x0`},
		{byteaType, `\xzz`},
		{byteaType, `abc`},
		// PostgreSQL validates json on input, so only structural damage
		// (as truncation would cause) can reach the converter.
		{jsonType, `{"a":1`},
		{jsonType, `{"a":"b}`},
		{jsonType, `[1,2}`},
		{jsonType, `]`},
		{jsonType, ``},
		{jsonType, `  `},
		{dateType, "01/15/2024"},
		{dateType, "2024-13-01"},
		{timeType, "2:30 PM"},
		{timetzType, "14:30:00"},
		{timestampType, "2024-01-15T14:30:00"},
		{timestampType, "2024-01-15 14:30:00+00"},
		{timestamptzType, "2024-01-15 14:30:00"},
		{timestamptzType, "2024-01-15 14:30:00.1234567+00"},
		{arrayOf(int4Type), "{1,2"},
		{arrayOf(int4Type), "{1,2}x"},
		{arrayOf(int4Type), "1,2"},
		{arrayOf(int4Type), "{1,x}"},
		{arrayOf(textType), `{"a}`},
		{arrayOf(int4Type), "[0:1]"},
	}
	for _, tc := range tests {
		if got, err := tc.typ.AppendJSON(nil, []byte(tc.in)); err == nil {
			t.Errorf("%s %q: got %s, want an error", tc.typ.Name, tc.in, got)
		} else if !strings.Contains(err.Error(), "invalid "+tc.typ.Name) &&
			(tc.typ.Elem == nil || !strings.Contains(err.Error(), "invalid "+tc.typ.Elem.Name)) {
			t.Errorf("%s %q: error %q does not name the type", tc.typ.Name, tc.in, err)
		}
	}
}

func TestAsKey(t *testing.T) {
	tests := []struct {
		typ        *Type
		in, want   string
		wantSchema string
	}{
		{float8Type, "NaN", `"NaN"`, `{"format":"number","type":"string"}`},
		{float4Type, "1.5", `"1.5"`, `{"format":"number","type":"string"}`},
		{domainOf(float8Type), "-0", `"-0"`, `{"format":"number","type":"string"}`},
		{jsonbType, `{"a": 1}`, `"{\"a\": 1}"`, `{"type":"string"}`},
		{arrayOf(int4Type), `{1,2}`, `"{1,2}"`, `{"type":"string"}`},
		{int8Type, "7", `7`, `{"type":"integer"}`},
		{textType, "x", `"x"`, `{"type":"string"}`},
	}
	for _, tc := range tests {
		key := tc.typ.AsKey()
		got, err := key.AppendJSON(nil, []byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s.AsKey() %q: got %s, %v; want %s", tc.typ.Name, tc.in, got, err, tc.want)
		}
		if schema, _ := json.Marshal(key.Schema()); string(schema) != tc.wantSchema {
			t.Errorf("%s.AsKey().Schema() = %s, want %s", tc.typ.Name, schema, tc.wantSchema)
		}
	}
	if float8Type.AsKey().keyKind() != keyFloat {
		t.Errorf("AsKey changed the key encoding of float8")
	}
}

func TestSchema(t *testing.T) {
	varchar := builtin(pgtype.VarcharOID, "varchar").withTypmod(24)
	tests := []struct {
		typ  *Type
		want string
	}{
		{boolType, `{"type":"boolean"}`},
		{int8Type, `{"type":"integer"}`},
		{numericType, `{"format":"number","type":"string"}`},
		{float8Type, `{"format":"number","type":["number","string"]}`},
		// Lengths and enum labels can be widened in place, so they are
		// never in the schema (see Type.Schema).
		{varchar, `{"type":"string"}`},
		{bpcharType.withTypmod(7), `{"type":"string"}`},
		{bpcharType, `{"type":"string"}`},
		{byteaType, `{"contentEncoding":"base64","type":"string"}`},
		{uuidType, `{"format":"uuid","type":"string"}`},
		{jsonbType, `{"contentMediaType":"application/vnd.estuary.postgresql.jsonb+json"}`},
		{jsonType, `{"contentMediaType":"application/json"}`},
		{dateType, `{"format":"date","type":"string"}`},
		{timetzType, `{"format":"time","type":"string"}`},
		{timestamptzType, `{"format":"date-time","type":"string"}`},
		{domainOf(varchar), `{"type":"string"}`},
		{arrayOf(int4Type), `{"items":{"type":["integer","array","null"]},"type":"array"}`},
		{arrayOf(jsonbType), `{"items":{"contentMediaType":"application/vnd.estuary.postgresql.jsonb+json"},"type":"array"}`},
		{arrayOf(enumType("b", "a")), `{"items":{"type":["string","array","null"]},"type":"array"}`},
		{enumType("b", "a"), `{"type":"string"}`},
		{&Type{Name: "unknown", codec: codecText}, `{"type":"string"}`},
	}
	for _, tc := range tests {
		got, err := json.Marshal(tc.typ.Schema())
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: Schema() = %s, %v; want %s", tc.typ.Name, got, err, tc.want)
		}
	}
}

func TestNullable(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"type":"integer"}`, `{"type":["integer","null"]}`},
		{`{"type":["number","string"]}`, `{"type":["number","string","null"]}`},
		{`{"type":["string","null"]}`, `{"type":["string","null"]}`},
		{`{}`, `{}`},
	}
	for _, tc := range tests {
		var in map[string]any
		if err := json.Unmarshal([]byte(tc.in), &in); err != nil {
			t.Fatal(err)
		}
		// Unmarshal gives []any for arrays; Schema builds []string.
		if types, ok := in["type"].([]any); ok {
			var s []string
			for _, v := range types {
				s = append(s, v.(string))
			}
			in["type"] = s
		}
		got, _ := json.Marshal(Nullable(in))
		if string(got) != tc.want {
			t.Errorf("Nullable(%s) = %s, want %s", tc.in, got, tc.want)
		}
		if again, _ := json.Marshal(in); string(again) != tc.in {
			t.Errorf("Nullable modified its argument: %s", again)
		}
	}
}

// TestTimestampCommonFormMatchesParser checks the copying fast path against
// the full parser on many instants, as PostgreSQL prints them in UTC.
func TestTimestampCommonFormMatchesParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		sec := rng.Int64N(253402300800-62135596800) - 62135596800 // years 1..9999
		us := rng.Int64N(1_000_000)
		if rng.IntN(4) == 0 {
			us = 0
		}
		tm := time.Unix(sec, us*1000).UTC()
		text := tm.Format("2006-01-02 15:04:05.999999")
		for _, withZone := range []bool{false, true} {
			in := text
			if withZone {
				in += "+00"
			}
			fast, ok := appendTimestampCommon(nil, []byte(in), withZone)
			if !ok {
				t.Fatalf("%q: the common form was not recognized", in)
			}
			var c civilTime
			if c, ok = parseTimestampText([]byte(in), withZone); !ok {
				t.Fatalf("%q: the parser refused it", in)
			}
			slow := append([]byte{'"'}, appendCivilDate(nil, clamp(c))...)
			slow = append(slow, 'T')
			slow = appendClock(slow, &c)
			slow = append(slow, 'Z', '"')
			if string(fast) != string(slow) {
				t.Fatalf("%q: fast path %s, parser %s", in, fast, slow)
			}
		}
	}
	for _, in := range []string{"2024-01-15 14:30:00+05:30", "0044-03-15 00:00:00+00 BC", "10000-01-01 00:00:00+00", "2024-01-15 14:30:00.1234567+00", "2024-01-15 14:30:00.+00", "infinity"} {
		if _, ok := appendTimestampCommon(nil, []byte(in), true); ok {
			t.Errorf("%q: the fast path accepted a form it must leave to the parser", in)
		}
	}
}

func TestEncodingTruncate(t *testing.T) {
	enc := Encoding{TruncateAt: 8}
	text, bytea, jsonb := *textType, *byteaType, *jsonbType
	text.enc, bytea.enc, jsonb.enc = enc, enc, enc
	for _, tc := range []struct {
		typ      *Type
		in, want string
	}{
		{&text, "abcdefgh", `"abcdefgh"`},   // at the limit: whole
		{&text, "abcdefghij", `"abcdefgh"`}, // cut
		{&text, "abcdefgé", `"abcdefg"`},    // é's first byte is the 8th: dropped
		{&text, "abcdeféx", `"abcdefé"`},    // é ends at the 8th byte: kept
		{&bytea, `\x00010203040506070809`, `"AAECAwQFBgc="`},
		{&jsonb, `{"a":"0123456789"}`, `{"flow_truncated":true,"original_size":18}`},
	} {
		got, err := tc.typ.AppendJSON(nil, []byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s %q: got %s, %v; want %s", tc.typ.Name, tc.in, got, err, tc.want)
		}
	}
}

func TestEncodingFlattenArrays(t *testing.T) {
	arr := arrayOf(int4Type)
	flat := *arr
	flat.enc = Encoding{FlattenArrays: true}
	for _, tc := range []struct{ in, nested, flat string }{
		{"{{1,2},{3,NULL}}", "[[1,2],[3,null]]", "[1,2,3,null]"},
		{"{1,2}", "[1,2]", "[1,2]"},
		{"{}", "[]", "[]"},
		{"[0:1][1:1]={{5},{6}}", "[[5],[6]]", "[5,6]"},
	} {
		if got, err := arr.AppendJSON(nil, []byte(tc.in)); err != nil || string(got) != tc.nested {
			t.Errorf("nested %s: %s, %v; want %s", tc.in, got, err, tc.nested)
		}
		if got, err := flat.AppendJSON(nil, []byte(tc.in)); err != nil || string(got) != tc.flat {
			t.Errorf("flat %s: %s, %v; want %s", tc.in, got, err, tc.flat)
		}
	}
	if got, _ := json.Marshal(flat.Schema()); string(got) != `{"items":{"type":["integer","null"]},"type":"array"}` {
		t.Errorf("flattened array schema %s", got)
	}
}
