package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

// typeColumn is one column of the type-fidelity table: its type, the value
// of the test row, and how PostgreSQL itself says what the document must
// hold.
type typeColumn struct {
	name, sqlType, value string
	// schema holds members the column's discovered schema must have; a
	// null member must be absent ("type": null for any JSON value).
	schema string
	check  oracle
}

// oracle is a SQL expression over the column (COL), evaluated by
// PostgreSQL on the stored row, and how the document value must match it.
type oracle struct {
	kind oracleKind
	sql  string
	bits int // for floats: 32 or 64
}

type oracleKind int

const (
	// oracleJSON: sql is a jsonb the document value must equal, numbers
	// compared by their exact text.
	oracleJSON oracleKind = iota
	// oracleInstant: sql is microseconds since 1970-01-01 UTC (since
	// midnight UTC for times); the value is an RFC 3339 date, date-time or
	// time at exactly that instant.
	oracleInstant
	// oracleFloat: sql is the value as float8, read in binary; the value is
	// a JSON number that parses to exactly it, or "NaN"/"±Infinity".
	oracleFloat
)

func jsonIs(sql string) oracle { return oracle{kind: oracleJSON, sql: sql} }
func floatIs(bits int) oracle  { return oracle{kind: oracleFloat, sql: "COL::float8", bits: bits} }

func instant() oracle {
	return oracle{kind: oracleInstant, sql: "(extract(epoch FROM COL) * 1000000)::int8"}
}

// Schemas of each JSON type as nullable columns carry them.
const (
	nullableString  = `{"type":["string","null"]}`
	nullableInteger = `{"type":["integer","null"]}`
	nullableNumber  = `{"type":["string","null"],"format":"number"}`
	nullableFloat   = `{"type":["number","string","null"],"format":"number"}`
	nullableArray   = `{"type":["array","null"]}`
	anyJSON         = `{"type":null}`
)

// typeColumns lists the columns of public.all_types.
func typeColumns() []typeColumn {
	return []typeColumn{
		{"c_bool", "boolean", "true", `{"type":["boolean","null"]}`, jsonIs("to_jsonb(COL)")},
		{"c_int2", "smallint", "-32768", nullableInteger, jsonIs("to_jsonb(COL)")},
		{"c_int4", "integer", "2147483647", nullableInteger, jsonIs("to_jsonb(COL)")},
		{"c_int8", "bigint", "-9223372036854775808", nullableInteger, jsonIs("to_jsonb(COL)")},
		{"c_oid", "oid", "4294967295", nullableInteger, jsonIs("to_jsonb(COL::int8)")},
		{"c_numeric", "numeric", "-123456789012345678901234567890.000000000000000000000000000001", nullableNumber, jsonIs("to_jsonb(COL::text)")},
		{"c_numeric_scale", "numeric(10,3)", "1.5", nullableNumber, jsonIs(`'"1.500"'`)},
		{"c_numeric_huge", "numeric", "('9' || repeat('0123456789', 1000) || '.' || repeat('9876543210', 1000) || '1')::numeric", nullableNumber, jsonIs("to_jsonb(COL::text)")},
		{"c_numeric_nan", "numeric", "'NaN'", nullableNumber, jsonIs(`'"NaN"'`)},
		{"c_numeric_inf", "numeric", "'Infinity'", nullableNumber, jsonIs(`'"Infinity"'`)},
		{"c_numeric_ninf", "numeric", "'-Infinity'", nullableNumber, jsonIs(`'"-Infinity"'`)},
		{"c_float4", "real", "0.1", nullableFloat, floatIs(32)},
		{"c_float4_max", "real", "3.4028235e38", nullableFloat, floatIs(32)},
		{"c_float4_inf", "real", "'Infinity'", nullableFloat, floatIs(32)},
		{"c_float8", "double precision", "1.2345678901234567e-300", nullableFloat, floatIs(64)},
		{"c_float8_subnormal", "double precision", "5e-324", nullableFloat, floatIs(64)},
		{"c_float8_negzero", "double precision", "'-0'", nullableFloat, floatIs(64)},
		{"c_float8_nan", "double precision", "'NaN'", nullableFloat, floatIs(64)},
		{"c_float8_ninf", "double precision", "'-Infinity'", nullableFloat, floatIs(64)},
		{"c_money", "money", "1234567.89", nullableString, jsonIs(`'"$1,234,567.89"'`)},
		{"c_money_neg", "money", "-1.5", nullableString, jsonIs(`'"-$1.50"'`)},
		{"c_char", "char(5)", "'ab'", `{"type":["string","null"]}`, jsonIs(`'"ab   "'`)},
		{"c_varchar", "varchar(10)", "'héllo'", `{"type":["string","null"]}`, jsonIs("to_jsonb(COL)")},
		{"c_text", "text", `E'tab\t nl\n cr\r quote" backslash\\ bell\x07 é 😀 \u2028 end'`, nullableString, jsonIs("to_jsonb(COL)")},
		{"c_citext", "citext", "'MiXeD Case'", nullableString, jsonIs("to_jsonb(COL::text)")},
		{"c_name", "name", "'a name'", nullableString, jsonIs("to_jsonb(COL::text)")},
		{"c_bytea", "bytea", `'\x0001020000fffe00'::bytea || sha256('x')`, `{"type":["string","null"],"contentEncoding":"base64"}`,
			jsonIs(`to_jsonb(translate(encode(COL, 'base64'), E'\n', ''))`)},
		{"c_uuid", "uuid", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", `{"type":["string","null"],"format":"uuid"}`, jsonIs(`'"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"'`)},
		{"c_json", "json", `E'{"b" : [1, 2.50, {"c":\n\t null}],\n  "a" : "x\\ny",  "e": {}}'`, anyJSON, jsonIs("COL::jsonb")},
		{"c_json_string", "json", `'"just a string"'`, anyJSON, jsonIs(`'"just a string"'`)},
		{"c_jsonb", "jsonb", `'{"k": [true, null, "\u00e9"], "n": 1.0e2, "s": "a\"b"}'`, anyJSON, jsonIs("COL")},
		{"c_date", "date", "'2024-02-29'", `{"type":["string","null"],"format":"date"}`, instant()},
		{"c_date_inf", "date", "'infinity'", nullableString, jsonIs(`'"9999-12-31"'`)},
		{"c_date_bc", "date", "'4713-01-01 BC'", nullableString, jsonIs(`'"0001-01-01"'`)},
		{"c_time", "time", "'13:14:15.5'", `{"type":["string","null"],"format":"time"}`, instant()},
		{"c_time_max", "time(6)", "'23:59:59.999999'", nullableString, instant()},
		{"c_time_24", "time", "'24:00:00'", nullableString, jsonIs(`'"23:59:59.999999Z"'`)},
		{"c_timetz", "timetz", "'14:30:00.5+05:30'", `{"type":["string","null"],"format":"time"}`, jsonIs(`'"14:30:00.5+05:30"'`)},
		{"c_timetz_west", "timetz", "'00:10:00.000001-03:15'", nullableString, instant()},
		{"c_timestamp", "timestamp", "'2024-01-15 14:30:00.12'", `{"type":["string","null"],"format":"date-time"}`, instant()},
		{"c_timestamp_us", "timestamp(6)", "'1999-12-31 23:59:59.000001'", nullableString, instant()},
		{"c_timestamptz", "timestamptz", "'2024-01-15 14:30:00.0015+05:30'", `{"type":["string","null"],"format":"date-time"}`, instant()},
		{"c_timestamptz_us", "timestamptz", "'2024-01-15 14:30:00.000001+05:30'", nullableString, instant()},
		{"c_timestamptz_old", "timestamptz", "'1899-12-31 23:59:59.999999-05'", nullableString, instant()},
		{"c_timestamptz_inf", "timestamptz", "'infinity'", nullableString, jsonIs(`'"9999-12-31T23:59:59.999999Z"'`)},
		{"c_timestamptz_ninf", "timestamptz", "'-infinity'", nullableString, jsonIs(`'"0001-01-01T00:00:00Z"'`)},
		{"c_timestamptz_10000", "timestamptz", "'10000-01-01 00:00:00+00'", nullableString, jsonIs(`'"9999-12-31T23:59:59.999999Z"'`)},
		{"c_timestamptz_bc", "timestamptz", "'0044-03-15 12:00:00+00 BC'", nullableString, jsonIs(`'"0001-01-01T00:00:00Z"'`)},
		{"c_interval", "interval", "'1 year 2 months 3 days 04:05:06.789'", nullableString, jsonIs(`'"P1Y2M3DT4H5M6.789S"'`)},
		{"c_interval_neg", "interval", "'-1 year +2 days -03:00:00.5'", nullableString, jsonIs(`'"P-1Y2DT-3H-0.5S"'`)},
		{"c_inet", "inet", "'2001:db8::1/64'", nullableString, jsonIs(`'"2001:db8::1/64"'`)},
		{"c_inet_host", "inet", "'192.168.0.1'", nullableString, jsonIs(`'"192.168.0.1"'`)},
		{"c_cidr", "cidr", "'10.0.0.0/8'", nullableString, jsonIs(`'"10.0.0.0/8"'`)},
		{"c_macaddr", "macaddr", "'08:00:2B:01:02:03'", nullableString, jsonIs(`'"08:00:2b:01:02:03"'`)},
		{"c_macaddr8", "macaddr8", "'08:00:2b:01:02:03:04:05'", nullableString, jsonIs(`'"08:00:2b:01:02:03:04:05"'`)},
		{"c_bit", "bit(4)", "B'1010'", `{"type":["string","null"]}`, jsonIs(`'"1010"'`)},
		{"c_varbit", "varbit(8)", "B'101'", `{"type":["string","null"]}`, jsonIs(`'"101"'`)},
		{"c_enum", "mood", "'happy'", `{"type":["string","null"]}`, jsonIs("to_jsonb(COL)")},
		{"c_domain", "positive", "42", nullableInteger, jsonIs("to_jsonb(COL::int8)")},
		{"c_domain_text", "short_text", "'dom'", `{"type":["string","null"]}`, jsonIs(`'"dom"'`)},
		{"c_int_array", "int4[]", "'{1,NULL,3}'", nullableArray, jsonIs("to_jsonb(COL)")},
		{"c_int_array2", "int4[][]", "'{{1,2},{3,NULL}}'", nullableArray, jsonIs(`'[[1,2],[3,null]]'`)},
		{"c_text_array", "text[]", `ARRAY['a,b', 'c"d', 'e\f', 'NULL', NULL, '', '{x}', ' sp ', E'nl\n']`, nullableArray, jsonIs("to_jsonb(COL)")},
		{"c_text_array2", "text[][]", `'{{"a b",NULL},{"}","\\\\"}}'`, nullableArray, jsonIs(`'[["a b",null],["}","\\\\"]]'`)},
		{"c_numeric_array", "numeric[]", "'{1.50,NaN,-Infinity}'", nullableArray, jsonIs(`'["1.50","NaN","-Infinity"]'`)},
		{"c_enum_array", "mood[]", "'{sad,happy,NULL}'", nullableArray, jsonIs(`'["sad","happy",null]'`)},
		{"c_domain_array", "positive[]", "'{1,2}'", nullableArray, jsonIs(`'[1,2]'`)},
		{"c_jsonb_array", "jsonb[]", `ARRAY['{"a": [1, 2]}'::jsonb, '"s"']`, nullableArray, jsonIs(`'[{"a":[1,2]},"s"]'`)},
		{"c_timestamptz_array", "timestamptz[]", "ARRAY['2024-01-15 14:30:00+05'::timestamptz, 'infinity']", nullableArray,
			jsonIs(`'["2024-01-15T09:30:00Z","9999-12-31T23:59:59.999999Z"]'`)},
		{"c_bytea_array", "bytea[]", `ARRAY['\x00'::bytea, '\xdeadbeef']`, nullableArray, jsonIs(`'["AA==","3q2+7w=="]'`)},
		{"c_int4range", "int4range", "'[1,10)'", nullableString, jsonIs(`'"[1,10)"'`)},
		{"c_tstzrange", "tstzrange", "'[2024-01-01 00:00:00+05,2024-02-01 00:00:00+00)'", nullableString,
			jsonIs(`'"[\"2023-12-31 19:00:00+00\",\"2024-02-01 00:00:00+00\")"'`)},
		{"c_int4multirange", "int4multirange", "'{[1,3), [5,7)}'", nullableString, jsonIs(`'"{[1,3),[5,7)}"'`)},
		{"c_tsvector", "tsvector", "'a fat:2 cat:3'", nullableString, jsonIs("to_jsonb(COL::text)")},
		{"c_tsquery", "tsquery", "'fat & (rat | cat)'", nullableString, jsonIs("to_jsonb(COL::text)")},
		{"c_xml", "xml", `'<a b="1">x &amp; y</a>'`, nullableString, jsonIs(`'"<a b=\"1\">x &amp; y</a>"'`)},
		{"c_point", "point", "'(1.5,-2)'", nullableString, jsonIs(`'"(1.5,-2)"'`)},
		{"c_polygon", "polygon", "'((0,0),(1,1),(1,0))'", nullableString, jsonIs(`'"((0,0),(1,1),(1,0))"'`)},
		{"c_hstore", "hstore", `'"k"=>"v", "a b"=>NULL'`, nullableString, jsonIs("to_jsonb(COL::text)")},
		{"c_composite", "pair", `ROW(1, 'a "b"')`, nullableString, jsonIs(`'"(1,\"a \"\"b\"\"\")"'`)},
		{"c_null", "text", "NULL", nullableString, jsonIs("'null'")},
		{"c_not_null", "integer NOT NULL", "7", `{"type":"integer"}`, jsonIs("'7'")},
	}
}

// TestTypeFidelity inserts a row holding every type before the capture
// starts and an identical row once it streams, so that one is backfilled
// and the other replicated. The two documents must be identical but for the
// key and _meta, valid against the discovered schema, and mean exactly what
// PostgreSQL says the row holds.
// typeColumnsOn returns the columns of typeColumns that server's major can
// hold: the multirange types and numeric's infinities are new in 14.
func typeColumnsOn(server pgversion.Server) []typeColumn {
	columns := typeColumns()
	if !server.Has(pgversion.Multiranges) {
		columns = slices.DeleteFunc(columns, func(c typeColumn) bool { return strings.Contains(c.sqlType, "multirange") })
	}
	if !server.Has(pgversion.NumericInfinity) {
		columns = slices.DeleteFunc(columns, func(c typeColumn) bool {
			return strings.HasPrefix(c.sqlType, "numeric") && strings.Contains(c.value, "Infinity")
		})
		columns = append(columns, typeColumn{"c_numeric_array", "numeric[]", "'{1.50,NaN}'", nullableArray, jsonIs(`'["1.50","NaN"]'`)})
	}
	return columns
}

func TestTypeFidelity(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE EXTENSION citext; CREATE EXTENSION hstore;
		CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
		CREATE DOMAIN positive AS int8 CHECK (VALUE > 0);
		CREATE DOMAIN short_text AS varchar(10);
		CREATE TYPE pair AS (a int, b text)`)
	columns := typeColumnsOn(f.server(t))
	var defs, values []string
	for _, c := range columns {
		defs = append(defs, c.name+" "+c.sqlType)
		values = append(values, c.value)
	}
	f.exec(t, "CREATE TABLE public.all_types (id int PRIMARY KEY, "+strings.Join(defs, ", ")+")")
	f.exec(t, "INSERT INTO public.all_types VALUES (1, "+strings.Join(values, ", ")+")")

	got := f.discover(t)
	b := got["public/all_types"]
	validator := strictValidator(t, b.DocumentSchema)
	checkColumnSchemas(t, b.DocumentSchema, columns)

	s := openActive(t, f, []testsupport.Binding{bindingFor(t, got, "public/all_types")}, 60*time.Second)
	f.exec(t, "INSERT INTO public.all_types SELECT 2, "+columnList(columns)+" FROM public.all_types WHERE id = 1")
	s.WaitFor(t, 30*time.Second, "the replicated row", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 2 })
	docs := docsOf(s, 0)
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want the backfilled and the replicated row", len(docs))
	}
	validateDocs(t, validator, docs)

	backfilled, replicated := rawFields(t, docs[0]), rawFields(t, docs[1])
	if !strings.Contains(string(backfilled["_meta"]), `"snapshot":true`) || strings.Contains(string(replicated["_meta"]), `"snapshot"`) {
		t.Fatalf("the first document should be backfilled and the second replicated:\n%.300s\n%.300s", docs[0], docs[1])
	}
	if string(backfilled["id"]) != "1" || string(replicated["id"]) != "2" {
		t.Fatalf("documents for ids %s and %s, want 1 and 2", backfilled["id"], replicated["id"])
	}
	if len(backfilled) != len(columns)+2 || len(replicated) != len(backfilled) {
		t.Errorf("documents have %d and %d members, want %d columns, id and _meta", len(backfilled), len(replicated), len(columns))
	}
	for _, c := range columns {
		if a, b := backfilled[c.name], replicated[c.name]; string(a) != string(b) {
			t.Errorf("%s (%s): backfilled %.200s, replicated %.200s", c.name, c.sqlType, a, b)
		}
	}

	conn := f.pg.Connect(t, f.db)
	if _, err := conn.Exec(context.Background(), "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'"); err != nil {
		t.Fatal(err)
	}
	for _, c := range columns {
		if err := c.check.verify(conn, c.name, backfilled[c.name]); err != nil {
			t.Errorf("%s (%s = %.80s): %v", c.name, c.sqlType, c.value, err)
		}
	}
}

func columnList(columns []typeColumn) string {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// checkColumnSchemas checks each column's schema has the members its
// typeColumn lists, so that validity against it means something.
func checkColumnSchemas(t *testing.T, schema json.RawMessage, columns []typeColumn) {
	t.Helper()
	var doc struct {
		Defs map[string]struct {
			Properties map[string]map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(schema, &doc); err != nil {
		t.Fatal(err)
	}
	props := doc.Defs["PublicAllTypes"].Properties
	if props == nil {
		t.Fatalf("no PublicAllTypes row schema in %.300s", schema)
	}
	for _, c := range columns {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(c.schema), &want); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		have := props[c.name]
		for member, w := range want {
			h, ok := have[member]
			switch {
			case string(w) == "null" && ok:
				t.Errorf("%s: schema has %s %s, want none", c.name, member, h)
			case string(w) != "null" && !sameMember(member, h, w):
				t.Errorf("%s: schema has %s %s, want %s", c.name, member, h, w)
			}
		}
	}
}

// sameMember compares schema members, "type" lists as sets.
func sameMember(member string, have, want json.RawMessage) bool {
	if member == "type" {
		var h, w []string
		if json.Unmarshal(have, &h) == nil && json.Unmarshal(want, &w) == nil {
			return len(h) == len(w) && subset(h, w) && subset(w, h)
		}
	}
	return sameJSON(have, want)
}

func subset(a, b []string) bool {
	for _, x := range a {
		found := false
		for _, y := range b {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

// verify checks a document value against what PostgreSQL says of the
// stored row 1.
func (o oracle) verify(conn *pgx.Conn, column string, value json.RawMessage) error {
	expr := strings.ReplaceAll(o.sql, "COL", pgx.Identifier{column}.Sanitize())
	if o.kind == oracleJSON {
		expr = "(" + expr + ")::jsonb::text"
	}
	query := "SELECT " + expr + " FROM public.all_types WHERE id = 1"
	ctx := context.Background()
	switch o.kind {
	case oracleJSON:
		var want string
		if err := conn.QueryRow(ctx, query).Scan(&want); err != nil {
			return fmt.Errorf("%s: %w", query, err)
		}
		if !sameJSON(value, []byte(want)) {
			return fmt.Errorf("document has %.200s, want %.200s", value, want)
		}
	case oracleInstant:
		var want int64
		if err := conn.QueryRow(ctx, query).Scan(&want); err != nil {
			return fmt.Errorf("%s: %w", query, err)
		}
		var s string
		if err := json.Unmarshal(value, &s); err != nil {
			return fmt.Errorf("document has %s, want an RFC 3339 string", value)
		}
		got, timeOfDay, err := parseInstant(s)
		if err != nil {
			return err
		}
		if timeOfDay {
			const day = 86_400_000_000
			want = (want%day + day) % day
		}
		if got != want {
			return fmt.Errorf("document has %s (%d µs), PostgreSQL says %d µs", s, got, want)
		}
	case oracleFloat:
		var want float64
		if err := conn.QueryRow(ctx, query).Scan(&want); err != nil {
			return fmt.Errorf("%s: %w", query, err)
		}
		var got float64
		var s string
		if json.Unmarshal(value, &s) == nil {
			switch s {
			case "NaN":
				got = math.NaN()
			case "Infinity":
				got = math.Inf(1)
			case "-Infinity":
				got = math.Inf(-1)
			default:
				return fmt.Errorf("document has the string %s, which is not a special float", value)
			}
		} else {
			var err error
			if got, err = strconv.ParseFloat(string(value), o.bits); err != nil {
				return fmt.Errorf("document has %s: %w", value, err)
			}
		}
		if math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) {
			return fmt.Errorf("document has %s (%v), PostgreSQL stores %v", value, got, want)
		}
	}
	return nil
}

// parseInstant parses an RFC 3339 date-time, full-date or full-time into
// microseconds since the epoch, or since midnight UTC for a time.
func parseInstant(s string) (micros int64, timeOfDay bool, err error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMicro(), false, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UnixMicro(), false, nil
	}
	t, err := time.Parse("15:04:05.999999999Z07:00", s)
	if err != nil {
		return 0, false, fmt.Errorf("%q is not an RFC 3339 date, date-time or time", s)
	}
	const day = 86_400_000_000
	us := t.UTC().Sub(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
	return (us%day + day) % day, true, nil
}
