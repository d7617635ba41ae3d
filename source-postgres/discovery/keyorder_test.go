package discovery

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/pgversion"
	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// A keyOrderCase is a table whose key holds values that are easy to order
// wrongly.
type keyOrderCase struct {
	name string
	// setup creates table t in its own schema; statements run one by one
	// (an enum value cannot be used in the transaction that adds it).
	setup []string
	rows  []string // row constructors for INSERT INTO t VALUES
	// order and param, when set, are the ORDER BY list and the parameter
	// list the key columns must produce; %02d in param stands for the
	// case's number, which names its schema.
	order, param string
}

// textValues are collation traps: case, punctuation, trailing blanks,
// accents precomposed and decomposed, and characters beyond the BMP.
var textValues = []string{`'a'`, `'B'`, `'_x'`, `'Z '`, `''`, `' '`, `'é'`, `'e'`, `E'e\u0301'`, `'A'`,
	`'a '`, `'ab'`, `'aB'`, `'~'`, `'😀'`, `'Ω'`, `'Ab'`, `'z'`}

func rowsOf(values ...string) []string {
	rows := make([]string, len(values))
	for i, v := range values {
		rows[i] = "(" + v + ")"
	}
	return rows
}

func oneColumn(typ string) []string {
	return []string{"CREATE TABLE t (k " + typ + " PRIMARY KEY)"}
}

var keyOrderCases = []keyOrderCase{
	{name: "int2", setup: oneColumn("int2"), rows: rowsOf("-32768", "-1", "0", "1", "32767"), order: `"k"`},
	{name: "int4", setup: oneColumn("int4"), rows: rowsOf("-2147483648", "-1", "0", "7", "2147483647"), order: `"k"`},
	{name: "int8", setup: oneColumn("int8"), rows: rowsOf("-9223372036854775808", "-256", "-1", "0", "255", "256", "9223372036854775807"), order: `"k"`},
	{name: "oid", setup: oneColumn("oid"), rows: rowsOf("0", "1", "2147483647", "2147483648", "4294967295"), order: `"k"`},
	{name: "bool", setup: oneColumn("bool"), rows: rowsOf("true", "false"), order: `"k"`},
	{name: "float4", setup: oneColumn("float4"), rows: rowsOf(`'-Infinity'`, `'-3.4e38'`, `'-1'`, `'-1e-45'`, `'-0'`,
		`'1e-45'`, `'1.1'`, `'1.1000001'`, `'3.4e38'`, `'Infinity'`, `'NaN'`), order: `"k"`},
	{name: "float8", setup: oneColumn("float8"), rows: rowsOf(`'-Infinity'`, `'-1e308'`, `'-5e-324'`, `'-0'`, `'5e-324'`,
		`'0.1'`, `'0.30000000000000004'`, `'0.3'`, `'1e16'`, `1e16::float8 + 2`, `'Infinity'`, `'NaN'`), order: `"k"`},
	{name: "numeric", setup: oneColumn("numeric"), rows: rowsOf(`'-Infinity'`, `-1e100`, `-1.5`, `-0.001`, `-1e-100`, `0`,
		`0.001`, `0.1`, `1.5`, `1.51`, `1.500001`, `10`, `123456789012345678901234567890.5`, `'Infinity'`, `'NaN'`), order: `"k"`},
	{name: "numeric domain", setup: []string{"CREATE DOMAIN amount AS numeric(10,2) CHECK (VALUE > -1000)",
		"CREATE TABLE t (k amount PRIMARY KEY)"}, rows: rowsOf("-999.99", "-0.01", "0", "0.1", "12.5", "100"), order: `"k"`},
	{name: "uuid", setup: oneColumn("uuid"), rows: rowsOf(`'00000000-0000-0000-0000-000000000000'`, `'ffffffff-ffff-ffff-ffff-ffffffffffff'`,
		`'7fffffff-0000-0000-0000-000000000000'`, `'80000000-0000-0000-0000-000000000000'`, `'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`,
		`'00000000-0000-0000-0000-000000000100'`), order: `"k"`},
	{name: "bytea", setup: oneColumn("bytea"), rows: rowsOf(`'\x'`, `'\x00'`, `'\x0000'`, `'\x0001'`, `'\x01'`, `'\x00ff'`,
		`'\xff'`, `'\xff00'`, `'\x7f'`, `'\x80'`), order: `"k"`},
	{name: "date", setup: oneColumn("date"), rows: rowsOf(`'-infinity'`, `'infinity'`, `'4713-01-01 BC'`, `'0001-01-01 BC'`,
		`'0001-01-01'`, `'1969-12-31'`, `'1970-01-01'`, `'2000-01-01'`, `'2024-02-29'`, `'5874897-12-31'`), order: `"k"`},
	{name: "timestamp", setup: oneColumn("timestamp"), rows: rowsOf(`'-infinity'`, `'infinity'`, `'4713-01-01 00:00:00 BC'`,
		`'0001-12-31 23:59:59.999999 BC'`, `'1999-12-31 23:59:59.999999'`, `'2000-01-01'`, `'2024-01-15 14:30:00.5'`,
		`'2024-01-15 14:30:00.500001'`, `'294276-12-31 23:59:59.999999'`), order: `"k"`},
	{name: "timestamptz", setup: oneColumn("timestamptz"), rows: rowsOf(`'-infinity'`, `'infinity'`, `'2024-01-15 14:30:00+05:30'`,
		`'2024-01-15 09:00:00.000001+00'`, `'2024-01-15 08:59:59.999999+00'`, `'1901-01-01 00:00:00+00:19:32'`,
		`'0044-03-15 12:00:00+00 BC'`, `'12345-01-01 00:00:00+00'`), order: `"k"`},
	{name: "time", setup: oneColumn("time"), rows: rowsOf(`'00:00'`, `'00:00:00.000001'`, `'12:00'`, `'23:59:59.999999'`, `'24:00'`), order: `"k"`},
	{name: "enum", setup: []string{
		"CREATE TYPE mood AS ENUM ('zzz', 'aaa', 'mmm')",
		"ALTER TYPE mood ADD VALUE 'bbb' BEFORE 'aaa'",
		"ALTER TYPE mood ADD VALUE 'ccc' AFTER 'mmm'",
		"CREATE TABLE t (k mood PRIMARY KEY)",
	}, rows: rowsOf(`'mmm'`, `'aaa'`, `'zzz'`, `'bbb'`, `'ccc'`), order: `"k"`},
	{name: "text", setup: oneColumn("text"), rows: rowsOf(textValues...), order: `"k" COLLATE "C"`},
	{name: "varchar", setup: oneColumn("varchar(10)"), rows: rowsOf(textValues...), order: `"k" COLLATE "C"`},
	{name: "name", setup: oneColumn("name"), rows: rowsOf(textValues...), order: `"k"`, param: `$1::name COLLATE pg_catalog."C"`},
	{name: "char", setup: oneColumn("char(3)"), rows: rowsOf(`'a'`, `'a b'`, `'ab'`, `''`, `'B'`, `'Z'`, `'_x'`, `'é'`, `E'e\u0301'`, `'~'`),
		order: `"k" COLLATE "C"`},
	{name: "text collate C", setup: oneColumn(`text COLLATE "C"`), rows: rowsOf(textValues...), order: `"k"`,
		param: `$1::text COLLATE pg_catalog."C"`},
	{name: "text collate POSIX", setup: oneColumn(`text COLLATE "POSIX"`), rows: rowsOf(textValues...), order: `"k"`,
		param: `$1::text COLLATE pg_catalog."POSIX"`},
	{name: "text collate custom C", setup: []string{`CREATE COLLATION "By Bytes" (locale = 'C')`, `CREATE TABLE t (k text COLLATE "By Bytes" PRIMARY KEY)`},
		rows: rowsOf(textValues...), order: `"k"`, param: `$1::text COLLATE case%02d."By Bytes"`},
	{name: "domain collate C", setup: []string{`CREATE DOMAIN ctext AS text COLLATE "C"`, "CREATE TABLE t (k ctext PRIMARY KEY)"},
		rows: rowsOf(textValues...), order: `"k"`},
	{name: "citext", setup: []string{"CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public", "CREATE TABLE t (k public.citext PRIMARY KEY)"},
		rows: rowsOf(`'a'`, `'B'`, `'_x'`, `'Z '`, `''`, `'é'`, `'e'`, `E'e\u0301'`, `'ab'`, `'~'`), order: `format('%s', "k") COLLATE "C"`},
	{name: "inet", setup: oneColumn("inet"), rows: rowsOf(`'10.0.0.1'`, `'10.0.0.1/8'`, `'9.9.9.9'`, `'::1'`, `'192.168.0.0/16'`, `'10.0.0.10'`),
		order: `format('%s', "k") COLLATE "C"`},
	{name: "interval", setup: oneColumn("interval"), rows: rowsOf(`'1 day'`, `'25 hours'`, `'-1 mon'`, `'P1Y'`, `'0'`, `'00:00:00.5'`)},
	{name: "timetz", setup: oneColumn("timetz"), rows: rowsOf(`'12:00+00'`, `'12:00+01'`, `'13:00+01'`, `'00:00-12'`, `'23:59:59.999999+14'`)},
	{name: "money", setup: oneColumn("money"), rows: rowsOf(`'$1.00'`, `'$10.00'`, `'-$1.00'`, `'$2.00'`, `'$0.00'`)},
	{name: "text[]", setup: oneColumn("text[]"), rows: rowsOf(`'{a,b}'`, `'{a}'`, `'{}'`, `'{"a b"}'`, `'{NULL}'`, `'{{a},{b}}'`, `'[0:0]={a}'`)},
	{name: "jsonb", setup: oneColumn("jsonb"), rows: rowsOf(`'{"a": 1}'`, `'[1, 2]'`, `'"x"'`, `'null'`, `'1'`, `'{"a": 1, "b": "é"}'`)},
	{name: "composite key", setup: []string{"CREATE TABLE t (a text, b int8, c text, PRIMARY KEY (a, b))"},
		rows:  []string{`('a', 2, '')`, `('a', 10, '')`, `('B', 1, '')`, `('', 5, '')`, `('é', -1, '')`, `('a', -5, '')`, `('a ', 0, '')`},
		order: `"a" COLLATE "C", "b"`},
	{name: "fallback key", setup: []string{"CREATE TABLE t (u uuid NOT NULL, d date NOT NULL, x int)", "CREATE UNIQUE INDEX t_ud ON t (d, u)"},
		rows: []string{`('00000000-0000-0000-0000-000000000002', '2024-01-01', 1)`, `('00000000-0000-0000-0000-000000000001', '2024-01-01', 1)`,
			`('00000000-0000-0000-0000-000000000001', 'infinity', 1)`, `('00000000-0000-0000-0000-000000000003', '1999-01-01', 1)`},
		order: `"d", "u"`},
}

func TestKeyOrder(t *testing.T) {
	pg := testsupport.SharedPostgres(t)
	db := pg.NewDatabase(t)
	var icu bool
	conn, _ := connectWithSetup(t, pg, db, "")
	if err := conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT FROM pg_collation WHERE collname = 'en-x-icu')`).Scan(&icu); err != nil {
		t.Fatal(err)
	}
	cases := slices.Clone(keyOrderCases)
	server, err := pgversion.Read(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if !server.Has(pgversion.NumericInfinity) {
		for i, c := range cases {
			if c.name == "numeric" {
				c.rows = slices.DeleteFunc(slices.Clone(c.rows), func(r string) bool { return strings.Contains(r, "Infinity") })
				cases[i] = c
			}
		}
	}
	if icu {
		cases = append(cases, keyOrderCase{name: "text collate icu", setup: oneColumn(`text COLLATE "en-x-icu"`),
			rows: rowsOf(textValues...), order: `"k" COLLATE "C"`})
	} else {
		t.Log("ICU collations are missing: skipping the ICU column")
	}
	for i, c := range cases {
		schema := fmt.Sprintf("case%02d", i)
		pg.Exec(t, db, "CREATE SCHEMA "+schema)
		for _, stmt := range c.setup {
			pg.Exec(t, db, "SET search_path TO "+schema+"; "+stmt)
		}
		pg.Exec(t, db, "INSERT INTO "+schema+".t VALUES "+strings.Join(c.rows, ", "))
	}
	conn, reg := connectWithSetup(t, pg, db, "")
	tables, err := ListTables(t.Context(), conn, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			schema := fmt.Sprintf("case%02d", i)
			idx := slices.IndexFunc(tables, func(tbl *Table) bool { return tbl.Schema == schema })
			if idx < 0 {
				t.Fatalf("table %s.t was not discovered", schema)
			}
			param := c.param
			if strings.Contains(param, "%02d") {
				param = fmt.Sprintf(param, i)
			}
			checkKeyOrder(t, conn, tables[idx], len(c.rows), c.order, param)
		})
	}
}

// TestKeyOrderDatabaseCollation checks text keys in databases whose default
// collation is C, where ordering needs no COLLATE clause and the primary
// key index serves it, and ICU with a C datcollate, where it does not.
func TestKeyOrderDatabaseCollation(t *testing.T) {
	pg := testsupport.SharedPostgres(t)
	admin := pg.Connect(t, "postgres")
	var icu bool
	if err := admin.QueryRow(t.Context(), `SELECT EXISTS (SELECT FROM pg_collation WHERE collprovider = 'i')`).Scan(&icu); err != nil {
		t.Fatal(err)
	}
	server, err := pgversion.Read(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, create, order, param string
	}{
		{"c", "LOCALE 'C'", `"k"`, `$1::text COLLATE pg_catalog."default"`},
		{"icu", "LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'en'", `"k" COLLATE "C"`, `$1::text COLLATE "C"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "icu" && !icu {
				t.Skip("the server has no ICU support")
			}
			if tc.name == "icu" && !server.Has(pgversion.DatabaseLocaleProvider) {
				t.Skipf("PostgreSQL %s has no ICU database default (LOCALE_PROVIDER is new in 15)", server.Version)
			}
			db := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_"))
			pg.Exec(t, "postgres", "CREATE DATABASE "+db+" TEMPLATE template0 ENCODING 'UTF8' "+tc.create)
			t.Cleanup(func() { pg.Exec(t, "postgres", "DROP DATABASE "+db+" WITH (FORCE)") })
			conn, reg := connectWithSetup(t, pg, db, "CREATE TABLE t (k text PRIMARY KEY, v int); INSERT INTO t (k) VALUES "+
				strings.Join(rowsOf(textValues...), ", ")+"; ANALYZE t")
			tables, err := ListTables(t.Context(), conn, reg, Options{})
			if err != nil || len(tables) != 1 {
				t.Fatalf("ListTables = %v, %v", tables, err)
			}
			checkKeyOrder(t, conn, tables[0], len(textValues), tc.order, tc.param)
		})
	}
}

// checkKeyOrder reads the table in key order and checks that the key
// encodings ascend strictly in that order, and that comparing with each
// row's key as parameters selects exactly the rows after it. Where the
// order is the key columns' own, it checks that the key index serves it.
func checkKeyOrder(t *testing.T, conn *pgx.Conn, table *Table, wantRows int, wantOrder, wantParams string) {
	t.Helper()
	var keyCols []*Column
	var selects, order, params []string
	for i, name := range table.Key {
		c := table.column(name)
		keyCols = append(keyCols, c)
		selects = append(selects, pgx.Identifier{c.Name}.Sanitize())
		order = append(order, c.KeyOrderExpr())
		params = append(params, c.KeyParamExpr(i+1))
	}
	if len(keyCols) == 0 {
		t.Fatalf("table %s has no key", table.QuotedName())
	}
	orderBy := strings.Join(order, ", ")
	if wantOrder != "" && orderBy != wantOrder {
		t.Errorf("ORDER BY %s, want %s", orderBy, wantOrder)
	}
	if paramList := strings.Join(params, ", "); wantParams != "" && paramList != wantParams {
		t.Errorf("parameters %s, want %s", paramList, wantParams)
	}
	head := "SELECT " + strings.Join(selects, ", ") + " FROM " + table.QuotedName()
	all := queryRows(t, conn, head+" ORDER BY "+orderBy, nil)
	if len(all) != wantRows {
		t.Fatalf("the table has %d rows, want %d", len(all), wantRows)
	}

	keys := make([][]byte, len(all))
	for i, row := range all {
		for j, c := range keyCols {
			var err error
			if keys[i], err = c.AppendKey(keys[i], []byte(row[j])); err != nil {
				t.Fatalf("AppendKey(%q): %v", row[j], err)
			}
		}
	}
	for i := 1; i < len(keys); i++ {
		if bytes.Compare(keys[i-1], keys[i]) >= 0 {
			t.Errorf("PostgreSQL orders %q before %q, but their keys %x and %x do not ascend", all[i-1], all[i], keys[i-1], keys[i])
		}
	}

	after := head + " WHERE (" + orderBy + ") > (" + strings.Join(params, ", ") + ") ORDER BY " + orderBy
	for i, key := range keys {
		elems, err := sqlcapture.DecodeKey(key)
		if err != nil {
			t.Fatalf("DecodeKey(%x): %v", key, err)
		}
		var args [][]byte
		for j, c := range keyCols {
			p, err := c.KeyParam(elems[j])
			if err != nil {
				t.Fatalf("KeyParam(%#v) for %q: %v", elems[j], all[i], err)
			}
			args = append(args, []byte(p))
		}
		got := queryRows(t, conn, after, args)
		if want := all[i+1:]; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("rows after %q (parameters %q): got %q, want %q", all[i], args, got, want)
		}
		if i == 0 && !strings.Contains(orderBy, "COLLATE") {
			requireIndexCond(t, conn, after+" LIMIT 10", args)
		}
	}
}

// requireIndexCond checks that a chunk query compares the key in an index
// scan rather than filtering rows.
func requireIndexCond(t *testing.T, conn *pgx.Conn, query string, args [][]byte) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(t.Context(), "RESET enable_seqscan")
	var plan []string
	for _, line := range queryRows(t, conn, "EXPLAIN "+query, args) {
		plan = append(plan, line[0])
	}
	if !strings.Contains(strings.Join(plan, "\n"), "Index Cond") {
		t.Errorf("the chunk query does not use the key index:\n%s", strings.Join(plan, "\n"))
	}
}

// queryRows runs a query with text parameters and results, as backfills do.
func queryRows(t *testing.T, conn *pgx.Conn, sql string, args [][]byte) [][]string {
	t.Helper()
	result := conn.PgConn().ExecParams(t.Context(), sql, args, nil, nil, nil).Read()
	if result.Err != nil {
		t.Fatalf("%s: %v", sql, result.Err)
	}
	var rows [][]string
	for _, r := range result.Rows {
		row := make([]string, len(r))
		for i, v := range r {
			row[i] = string(v)
		}
		rows = append(rows, row)
	}
	return rows
}
