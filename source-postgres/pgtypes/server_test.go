package pgtypes

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.StopShared()
	os.Exit(code)
}

// connect opens a connection to a new database with the capture's session
// parameters.
func connect(t *testing.T, setup string) *pgx.Conn {
	t.Helper()
	pg := testsupport.SharedPostgres(t)
	db := pg.NewDatabase(t)
	if setup != "" {
		pg.Exec(t, db, setup)
	}
	conn := pg.Connect(t, db)
	for name, value := range SessionParams() {
		if _, err := conn.Exec(t.Context(), "SELECT set_config($1, $2, false)", name, value); err != nil {
			t.Fatalf("setting %s: %v", name, err)
		}
	}
	return conn
}

// queryText runs a query over the simple protocol, which returns every
// column in text format, as backfills read them.
func queryText(t *testing.T, conn *pgx.Conn, sql string) (fields []fieldType, rows [][][]byte) {
	t.Helper()
	results, err := conn.PgConn().Exec(t.Context(), sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	r := results[len(results)-1]
	for _, f := range r.FieldDescriptions {
		fields = append(fields, fieldType{f.Name, f.DataTypeOID, f.TypeModifier})
	}
	return fields, r.Rows
}

type fieldType struct {
	name   string
	oid    uint32
	typmod int32
}

const typesSetup = `
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
CREATE TYPE mood AS ENUM ('sad', 'happy');
ALTER TYPE mood ADD VALUE 'meh' BEFORE 'happy';
CREATE TYPE "Odd ""Type""" AS ENUM ('x');
CREATE DOMAIN short_text AS varchar(10);
CREATE DOMAIN positive AS int8 CHECK (VALUE > 0);
CREATE DOMAIN tiny_positive AS positive CHECK (VALUE < 10);
CREATE DOMAIN float_list AS float8[];
CREATE TYPE pair AS (a int, b text);
CREATE TYPE floatrange AS RANGE (subtype = float8);
`

// serverOf returns the version of conn's server, for the tests that adapt
// to what its major has.
func serverOf(t *testing.T, conn *pgx.Conn) pgversion.Server {
	t.Helper()
	s, err := pgversion.Read(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadRegistry(t *testing.T) {
	conn := connect(t, typesSetup)
	reg, err := LoadRegistry(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	oid := func(name string) uint32 {
		var oid uint32
		if err := conn.QueryRow(t.Context(), "SELECT $1::regtype::oid", name).Scan(&oid); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return oid
	}

	mood := reg.Lookup(oid("mood"), -1)
	if mood.Kind != KindEnum || !slices.Equal(mood.EnumLabels, []string{"sad", "meh", "happy"}) ||
		!slices.IsSorted(mood.EnumSortOrder) || len(mood.EnumSortOrder) != 3 {
		t.Errorf("mood = %+v, want an enum with labels sad, meh, happy in sort order", mood)
	}
	if odd := reg.Lookup(oid(`"Odd ""Type"""`), -1); odd.SQLName() != `"public"."Odd ""Type"""` {
		t.Errorf(`SQLName of "Odd ""Type""" = %s`, odd.SQLName())
	}
	short := reg.Lookup(oid("short_text"), -1)
	if short.Kind != KindDomain || short.Base.OID != pgtype.VarcharOID || short.Base.Name != "character varying(10)" {
		t.Errorf("short_text = %+v, base %+v; want a domain over character varying(10)", short, short.Base)
	}
	tiny := reg.Lookup(oid("tiny_positive"), -1)
	if tiny.Kind != KindDomain || tiny.Base.Name != "positive" || tiny.resolve().OID != pgtype.Int8OID {
		t.Errorf("tiny_positive does not resolve to bigint through positive")
	}
	if list := reg.Lookup(oid("float_list"), -1); list.resolve().Kind != KindArray || list.resolve().Elem.OID != pgtype.Float8OID {
		t.Errorf("float_list does not resolve to an array of float8")
	}
	kinds := map[string]Kind{
		"int4": KindBase, "citext": KindBase, "hstore": KindBase, "int4[]": KindArray, "mood[]": KindArray,
		"pair": KindComposite, "floatrange": KindRange, "int4multirange": KindMultirange, "record": KindPseudo,
		"name": KindBase, "point": KindBase, "int2vector": KindBase, "oidvector": KindBase,
	}
	if !serverOf(t, conn).Has(pgversion.Multiranges) {
		delete(kinds, "int4multirange")
	}
	for name, kind := range kinds {
		if got := reg.Lookup(oid(name), -1).Kind; got != kind {
			t.Errorf("%s: kind %v, want %v", name, got, kind)
		}
	}
	if elem := reg.Lookup(oid("mood[]"), -1).Elem; elem != mood {
		t.Errorf("the element of mood[] is %+v, want mood", elem)
	}
	unknown := reg.Lookup(4_000_000_000, 12)
	if unknown == nil || unknown.Kind != KindUnknown {
		t.Fatalf("Lookup of an unknown OID = %+v", unknown)
	}
	if got, err := unknown.AppendJSON(nil, []byte("x\ny")); err != nil || string(got) != `"x\ny"` {
		t.Errorf("an unknown type converts %q to %s, %v", "x\ny", got, err)
	}
}

// TestTypmodNames checks the type names Lookup derives from modifiers
// against the server's format_type.
func TestTypmodNames(t *testing.T) {
	conn := connect(t, typesSetup)
	// A negative scale is new in 15.
	negative := "numeric(5,-2)"
	if !serverOf(t, conn).Has(pgversion.NumericNegativeScale) {
		negative = "numeric(5,0)"
	}
	if _, err := conn.Exec(t.Context(), `
CREATE TABLE typmods (
    a varchar(5), b char(3), c char, d bpchar, e numeric(10,2), f `+negative+`, g numeric(7),
    h bit(3), i varbit(9), j time(2), k timetz(0), l timestamp(3), m timestamptz(6),
    n interval, o interval(2), p interval year, q interval day to second(3), r interval hour to minute,
    s interval minute to second(0), t interval month, u varchar(5)[], v numeric(4,1)[][], w short_text,
    x short_text[], y text, z mood, aa float8, ab "char", ac timestamp, ad bpchar[], ae "bit", af bit[], ag char(2)[])`); err != nil {
		t.Fatal(err)
	}
	reg, err := LoadRegistry(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(t.Context(), `SELECT attname, atttypid, atttypmod, format_type(atttypid, atttypmod)
		FROM pg_attribute WHERE attrelid = 'typmods'::regclass AND attnum > 0`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, want string
		var oid uint32
		var typmod int32
		if err := rows.Scan(&name, &oid, &typmod, &want); err != nil {
			t.Fatal(err)
		}
		if got := reg.Lookup(oid, typmod).Name; got != want {
			t.Errorf("column %s: Lookup(%d, %d).Name = %q, want %q", name, oid, typmod, got, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestConversionsFromServer converts values as the server prints them and
// checks the JSON and that it is valid against the type's schema.
func TestConversionsFromServer(t *testing.T) {
	conn := connect(t, typesSetup)
	reg, err := LoadRegistry(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr string // a SQL expression
		want string // its JSON; "" means the JSON string of the server's text
	}{
		{`true`, `true`},
		{`32767::int2`, `32767`},
		{`(-2147483648)::int4`, `-2147483648`},
		{`9223372036854775807::int8`, `9223372036854775807`},
		{`4294967295::oid`, `4294967295`},
		{`1.50::numeric`, `"1.50"`},
		{`'NaN'::numeric`, `"NaN"`},
		{`'-Infinity'::numeric`, `"-Infinity"`},
		{`1e-20::numeric`, `"0.00000000000000000001"`},
		{`0.1::float4`, `0.1`},
		{`0.1::float8`, `0.1`},
		{`'-0'::float8`, `-0`},
		{`1e300::float8`, `1e+300`},
		{`1.17549435e-38::float4`, `1.1754944e-38`},
		{`'NaN'::float4`, `"NaN"`},
		{`'-Infinity'::float8`, `"-Infinity"`},
		{`1234.5::money`, `"$1,234.50"`},
		{`'ab'::char(4)`, `"ab  "`},
		{`'abc'::varchar(5)`, `"abc"`},
		{`'x'::"char"`, `"x"`},
		{`'Straße'::citext`, `"Straße"`},
		{`'pg_class'::name`, `"pg_class"`},
		{`E'line\nbreak "quoted" \\ tab\t'::text`, `"line\nbreak \"quoted\" \\ tab\t"`},
		{`'\x00ff10'::bytea`, `"AP8Q"`},
		{`''::bytea`, `""`},
		{`'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid`, `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{`E'{"a" : 1,\n "b": [true, null]}'::json`, `{"a":1,"b":[true,null]}`},
		{`'"\ud800"'::json`, `"\ufffd"`},
		{`'{"b": 2, "a": "\u00e9"}'::jsonb`, `{"a":"é","b":2}`},
		{`'[]'::jsonb`, `[]`},
		{`'2024-01-15'::date`, `"2024-01-15"`},
		{`'infinity'::date`, `"9999-12-31"`},
		{`'-infinity'::date`, `"0001-01-01"`},
		{`'0044-03-15 BC'::date`, `"0001-01-01"`},
		{`'12345-06-07'::date`, `"9999-12-31"`},
		{`'14:30'::time`, `"14:30:00Z"`},
		{`'14:30:00.120'::time(3)`, `"14:30:00.12Z"`},
		{`'24:00'::time`, `"23:59:59.999999Z"`},
		{`'14:30:00.5+05:30'::timetz`, `"14:30:00.5+05:30"`},
		{`'14:30-08'::timetz`, `"14:30:00-08:00"`},
		{`'14:30 UTC'::timetz`, `"14:30:00Z"`},
		{`'2024-01-15 14:30:00.123456'::timestamp`, `"2024-01-15T14:30:00.123456Z"`},
		{`'2024-01-15 14:30:00.100'::timestamp`, `"2024-01-15T14:30:00.1Z"`},
		{`'infinity'::timestamp`, `"9999-12-31T23:59:59.999999Z"`},
		{`'0001-01-01 00:00:00 BC'::timestamp`, `"0001-01-01T00:00:00Z"`},
		{`'2024-01-15 14:30:00.123456-08'::timestamptz`, `"2024-01-15T22:30:00.123456Z"`},
		{`'-infinity'::timestamptz`, `"0001-01-01T00:00:00Z"`},
		{`'10000-01-01 00:00:00+00'::timestamptz`, `"9999-12-31T23:59:59.999999Z"`},
		{`'1 year 2 months 3 days 04:05:06.5'::interval`, `"P1Y2M3DT4H5M6.5S"`},
		{`'-1 day'::interval`, `"P-1D"`},
		{`'192.168.0.1'::inet`, `"192.168.0.1"`},
		{`'10.0.0.0/8'::cidr`, `"10.0.0.0/8"`},
		{`'08:00:2b:01:02:03'::macaddr`, `"08:00:2b:01:02:03"`},
		{`'08:00:2b:01:02:03:04:05'::macaddr8`, `"08:00:2b:01:02:03:04:05"`},
		{`B'0101'::bit(4)`, `"0101"`},
		{`B'01'::varbit`, `"01"`},
		{`'meh'::mood`, `"meh"`},
		{`'x'::"Odd ""Type"""`, `"x"`},
		{`'hello'::short_text`, `"hello"`},
		{`7::tiny_positive`, `7`},
		{`'{1.5,NaN}'::float_list`, `[1.5,"NaN"]`},
		{`'{{1,2},{3,NULL}}'::int4[]`, `[[1,2],[3,null]]`},
		{`'[0:1]={5,6}'::int4[]`, `[5,6]`},
		{`'{}'::text[]`, `[]`},
		{`ARRAY['a b', 'c"d', 'e\f', 'NULL', NULL, '', '{x}']::text[]`, `["a b","c\"d","e\\f","NULL",null,"","{x}"]`},
		{`ARRAY['sad', 'happy']::mood[]`, `["sad","happy"]`},
		{`ARRAY['2024-01-15 14:30:00+00', 'infinity']::timestamptz[]`, `["2024-01-15T14:30:00Z","9999-12-31T23:59:59.999999Z"]`},
		{`ARRAY['{"a": [1, 2]}', 'null']::jsonb[]`, `[{"a":[1,2]},null]`},
		{`ARRAY['\x00'::bytea]`, `["AA=="]`},
		{`ARRAY[ARRAY[1.5, 2.25]]::numeric[]`, `[["1.5","2.25"]]`},
		{`ARRAY['(1,2),(3,4)'::box, '(0,0),(1,1)']`, `["(3,4),(1,2)","(1,1),(0,0)"]`},
		{`ARRAY[row(1, 'a b')::pair]`, `["(1,\"a b\")"]`},
		{`ARRAY['[1,3)'::int4range, 'empty']`, `["[1,3)","empty"]`},
		{`ARRAY['ab'::char(3)]::char(3)[]`, `["ab "]`},
		{`'[1,10)'::int4range`, ``},
		{`'{[1,3), [5,7)}'::int4multirange`, ``},
		{`'[2024-01-01,2024-02-01)'::daterange`, ``},
		{`'[1.5,2.5]'::floatrange`, ``},
		{`row(1, 'a b')::pair`, ``},
		{`'a:1 b:2'::tsvector`, ``},
		{`'a & b'::tsquery`, ``},
		{`'<a>x</a>'::xml`, ``},
		{`'(1,2)'::point`, ``},
		{`'((0,0),(1,1),(1,0))'::polygon`, ``},
		{`'"k"=>"v"'::hstore`, ``},
		{`'1 2'::int2vector`, ``},
		{`'$.a'::jsonpath`, ``},
		{`pg_current_snapshot()`, ``},
		{`'123'::xid`, ``},
		{`'pg_class'::regclass`, ``},
	}
	server := serverOf(t, conn)
	tests = slices.DeleteFunc(tests, func(tc struct{ expr, want string }) bool {
		return !server.Has(pgversion.NumericInfinity) && strings.Contains(tc.expr, "Infinity'::numeric") ||
			!server.Has(pgversion.Multiranges) && strings.Contains(tc.expr, "multirange")
	})
	for _, tc := range tests {
		fields, rows := queryText(t, conn, "SELECT "+tc.expr)
		text := rows[0][0]
		typ := reg.Lookup(fields[0].oid, fields[0].typmod)
		got, err := typ.AppendJSON(nil, text)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		want := tc.want
		if want == "" {
			want = string(appendString(nil, text))
		}
		if string(got) != want {
			t.Errorf("%s (%s, text %q): got %s, want %s", tc.expr, typ.Name, text, got, want)
		}
		if err := validate(typ.Schema(), got); err != nil {
			schema, _ := json.Marshal(typ.Schema())
			t.Errorf("%s: %s does not match the schema %s: %v", tc.expr, got, schema, err)
		}
	}
}

// validate checks value against the subset of JSON Schema that Schema uses.
func validate(schema map[string]any, value []byte) error {
	d := json.NewDecoder(bytes.NewReader(value))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return err
	}
	return validateValue(schema, v)
}

var formatChecks = map[string]func(string) bool{
	"date":      func(s string) bool { _, err := time.Parse("2006-01-02", s); return err == nil },
	"date-time": func(s string) bool { _, err := time.Parse(time.RFC3339Nano, s); return err == nil },
	"time": func(s string) bool {
		_, err := time.Parse("15:04:05.999999999Z07:00", s)
		return err == nil
	},
	"uuid":   regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString,
	"number": regexp.MustCompile(`^(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|-?Infinity)$`).MatchString,
}

func validateValue(schema map[string]any, v any) error {
	if anyOf, ok := schema["anyOf"].([]any); ok {
		for _, alt := range anyOf {
			if validateValue(alt.(map[string]any), v) == nil {
				return nil
			}
		}
		return fmt.Errorf("%v matches no anyOf alternative", v)
	}
	if typ, ok := schema["type"]; ok {
		types, _ := typ.([]string)
		if s, ok := typ.(string); ok {
			types = []string{s}
		}
		var actual string
		switch x := v.(type) {
		case nil:
			actual = "null"
		case bool:
			actual = "boolean"
		case json.Number:
			actual = "number"
			if !strings.ContainsAny(x.String(), ".eE") && slices.Contains(types, "integer") {
				actual = "integer"
			}
		case string:
			actual = "string"
		case []any:
			actual = "array"
		case map[string]any:
			actual = "object"
		}
		if !slices.Contains(types, actual) {
			return fmt.Errorf("%v is a %s, not one of %v", v, actual, types)
		}
	}
	if enum, ok := schema["enum"]; ok {
		var allowed []any
		switch e := enum.(type) {
		case []string:
			for _, s := range e {
				allowed = append(allowed, s)
			}
		case []any:
			allowed = e
		}
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("%v is not in the enum %v", v, allowed)
		}
	}
	switch x := v.(type) {
	case string:
		if f, ok := schema["format"].(string); ok && !formatChecks[f](x) {
			return fmt.Errorf("%q is not a valid %s", x, f)
		}
		if n, ok := schema["maxLength"].(int); ok && utf8.RuneCountInString(x) > n {
			return fmt.Errorf("%q is longer than %d", x, n)
		}
		if n, ok := schema["minLength"].(int); ok && utf8.RuneCountInString(x) < n {
			return fmt.Errorf("%q is shorter than %d", x, n)
		}
		if schema["contentEncoding"] == "base64" {
			if _, err := base64.StdEncoding.DecodeString(x); err != nil {
				return fmt.Errorf("%q is not base64: %v", x, err)
			}
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for _, item := range x {
				if err := validateValue(items, item); err != nil {
					return fmt.Errorf("item: %w", err)
				}
			}
		}
	}
	return nil
}

// TestSessionParamsFixTextForms guards the assumption the converters are
// built on: connected as the capture connects, with SessionParams as
// startup parameters, the server prints exactly these forms whatever the
// database's own defaults.
func TestSessionParamsFixTextForms(t *testing.T) {
	pg := testsupport.SharedPostgres(t)
	db := pg.NewDatabase(t)
	ident := pgx.Identifier{db}.Sanitize()
	pg.Exec(t, db, "ALTER DATABASE "+ident+` SET DateStyle = 'SQL, DMY'`)
	pg.Exec(t, db, "ALTER DATABASE "+ident+` SET TimeZone = 'Asia/Kolkata'`)
	pg.Exec(t, db, "ALTER DATABASE "+ident+` SET IntervalStyle = 'postgres_verbose'`)
	pg.Exec(t, db, "ALTER DATABASE "+ident+` SET extra_float_digits = -3`)
	pg.Exec(t, db, "ALTER DATABASE "+ident+` SET bytea_output = 'escape'`)
	// money follows lc_monetary. Servers have different locales installed:
	// use one that prints money differently from C if there is one.
	var locale string
	probe := pg.Connect(t, db)
	for _, l := range []string{"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "en_IN.UTF-8", "en_IN.utf8"} {
		if _, err := probe.Exec(t.Context(), "SET lc_monetary = '"+l+"'"); err == nil {
			locale = l
			pg.Exec(t, db, "ALTER DATABASE "+ident+" SET lc_monetary = '"+l+"'")
			break
		}
	}
	if locale == "" {
		t.Log("the server has no de_DE, fr_FR or en_IN locale: lc_monetary is checked with the C locale only")
	}

	cfg, err := pgx.ParseConfig(pg.SuperuserURL(db))
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range SessionParams() {
		cfg.RuntimeParams[name] = value
	}
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	want := []string{"2024-01-15 14:30:00.5+00", "P1DT2H", "1.1", `\x01`, "2024-01-15", "-$1,234,567.89"}
	_, rows := queryText(t, conn, `SELECT '2024-01-15 15:30:00.5+01'::timestamptz, '1 day 2 hours'::interval,
		1.1::float8, '\x01'::bytea, '2024-01-15'::date, '-1234567.89'::money`)
	for i, w := range want {
		if got := string(rows[0][i]); got != w {
			t.Errorf("column %d prints %q, want %q", i, got, w)
		}
	}
	if got := strings.Join(slices.Sorted(maps.Keys(SessionParams())), ","); got != "DateStyle,IntervalStyle,TimeZone,bytea_output,client_encoding,extra_float_digits,lc_monetary" {
		t.Errorf("SessionParams has %s", got)
	}
}
