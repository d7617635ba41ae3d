package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// The differential test: one server decodes the same transactions twice,
// with pgoutput's text values and with its binary ones, and both are run
// through Stream.decode. Every event, and every change's key and document
// byte for byte, must be the same. The columns are the type matrix of
// TestTypeFidelity, with more edge values each, NULLs, updates under
// REPLICA IDENTITY FULL (old rows, _meta.before), deletes of keys only,
// and a key made of rewritten types.

// matrixColumn is a column of the differential tables and its values: row
// i holds values[i % len(values)], and one more row holds only NULLs.
type matrixColumn struct {
	name, sqlType string
	values        []string
	// binary: values of the type arrive in binary (pgtypes.BinaryForm).
	binary bool
}

func matrixColumns() []matrixColumn {
	return []matrixColumn{
		{"c_bool", "boolean", []string{"true", "false"}, true},
		{"c_int2", "smallint", []string{"-32768", "32767", "0"}, true},
		{"c_int4", "integer", []string{"2147483647", "-2147483648", "0", "-1"}, true},
		{"c_int8", "bigint", []string{"-9223372036854775808", "9223372036854775807", "0"}, true},
		{"c_oid", "oid", []string{"4294967295", "0"}, true},
		{"c_numeric", "numeric", []string{"-123456789012345678901234567890.000000000000000000000000000001",
			"('9' || repeat('0123456789', 100) || '.' || repeat('9876543210', 100) || '1')::numeric",
			"0", "0.00000", "-0.0001", "10000", "1e-20", "123.4500", "99990000", "'NaN'", "'Infinity'", "'-Infinity'", "1e100", "-7"}, true},
		{"c_numeric_scale", "numeric(10,3)", []string{"1.5", "-0.001", "9999999.999", "0"}, true},
		{"c_numeric_neg_scale", "numeric(6,-2)", []string{"123456", "0", "-99"}, true},
		{"c_float4", "real", []string{"0.1", "3.4028235e38", "'Infinity'", "'-Infinity'", "'NaN'", "'-0'", "1e-45", "123456", "1234567",
			"1e-4", "1e-5", "0.0001234", "100000", "1e6", "-2.5", "16777216"}, true},
		{"c_float8", "double precision", []string{"1.2345678901234567e-300", "5e-324", "'-0'", "'NaN'", "'-Infinity'", "1e15", "1e14",
			"123456789012345.6", "0.0001", "0.00001", "1e22", "1.7976931348623157e308", "100", "-2.5", "0.1", "1e-100", "123456789012345678"}, true},
		{"c_money", "money", []string{"1234567.89", "-1.5"}, false},
		{"c_char", "char(5)", []string{"'ab'", "''", "'abcde'"}, true},
		{"c_varchar", "varchar(10)", []string{"'héllo'", "''"}, true},
		{"c_text", "text", []string{`E'tab\t nl\n cr\r quote" backslash\\ bell\x07 é 😀 \u2028 end'`, "''", "'NULL'"}, true},
		{"c_citext", "citext", []string{"'MiXeD Case'"}, false},
		{"c_name", "name", []string{"'a name'", "''"}, true},
		{"c_bytea", "bytea", []string{`'\x0001020000fffe00'::bytea || sha256('x')`, `'\x'::bytea`, `'\xff'::bytea`}, true},
		{"c_uuid", "uuid", []string{"'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'"}, true},
		{"c_json", "json", []string{`E'{"b" : [1, 2.50, {"c":\n\t null}],\n  "a" : "x\\ny",  "e": {}}'`, `'"just a string"'`, "'null'", "'[]'"}, true},
		{"c_jsonb", "jsonb", []string{`'{"k": [true, null, "\u00e9"], "n": 1.0e2, "s": "a\"b"}'`, "'null'", "'[]'", `'{"a": -0, "b": 1e-7}'`, "'3'"}, true},
		{"c_date", "date", []string{"'2024-02-29'", "'infinity'", "'-infinity'", "'4713-01-01 BC'", "'0001-01-01'", "'0001-12-31 BC'",
			"'10000-12-31'", "'5874897-12-31'", "'1999-12-31'", "'2000-01-01'", "'1970-01-01'"}, true},
		{"c_time", "time", []string{"'13:14:15.5'", "'23:59:59.999999'", "'24:00:00'", "'00:00:00'", "'00:00:00.000001'", "'12:00:00.1'"}, true},
		{"c_time3", "time(3)", []string{"'13:14:15.5678'"}, true},
		{"c_timetz", "timetz", []string{"'14:30:00.5+05:30'", "'00:10:00.000001-03:15'", "'12:00:00+00'", "'12:00:00+01:02:03'",
			"'24:00:00-15:59'", "'01:00:00-00:00:30'", "'23:00:00+15:59'"}, true},
		{"c_timestamp", "timestamp", []string{"'2024-01-15 14:30:00.12'", "'infinity'", "'-infinity'", "'0044-03-15 12:00:00 BC'",
			"'294276-12-31 23:59:59.999999'", "'4713-01-01 00:00:00 BC'", "'1999-12-31 23:59:59.000001'", "'1970-01-01'", "'2000-01-01'",
			"'0001-01-01 00:00:00'", "'0001-12-31 23:59:59.5 BC'", "'9999-12-31 23:59:59.999999'", "'10000-01-01'"}, true},
		{"c_timestamp0", "timestamp(0)", []string{"'2024-01-15 14:30:00.72'"}, true},
		{"c_timestamptz", "timestamptz", []string{"'2024-01-15 14:30:00.0015+05:30'", "'infinity'", "'-infinity'",
			"'1899-12-31 23:59:59.999999-05'", "'0044-03-15 12:00:00+00 BC'", "'10000-01-01 00:00:00+00'", "'294276-12-31 23:59:59.999999+00'",
			"'4713-01-01 00:00:00+00 BC'", "'2000-01-01 00:00:00+00'", "'1969-12-31 23:59:59.999999+00'"}, true},
		{"c_interval", "interval", []string{"'1 year 2 months 3 days 04:05:06.789'"}, false},
		{"c_inet", "inet", []string{"'2001:db8::1/64'"}, false},
		{"c_macaddr", "macaddr", []string{"'08:00:2B:01:02:03'"}, false},
		{"c_bit", "bit(4)", []string{"B'1010'"}, false},
		{"c_varbit", "varbit(8)", []string{"B'101'"}, false},
		{"c_enum", "mood", []string{"'happy'", "'sad'", "'with space'"}, true},
		{"c_domain", "positive", []string{"42", "9223372036854775807"}, true},
		{"c_domain_text", "short_text", []string{"'dom'", "''"}, true},
		{"c_domain_ts", "instant", []string{"'2024-01-15 14:30:00+00'", "'infinity'"}, true},
		{"c_domain_numeric", "amount", []string{"12.50", "'NaN'"}, true},
		{"c_domain_domain", "small_positive", []string{"7"}, true},
		{"c_int_array", "int4[]", []string{"'{1,NULL,3}'"}, false},
		{"c_enum_array", "mood[]", []string{"'{sad,happy,NULL}'"}, false},
		{"c_domain_array", "positive[]", []string{"'{1,2}'"}, false},
		{"c_domain_over_array", "int_list", []string{"'{1,2}'"}, false},
		{"c_int4range", "int4range", []string{"'[1,10)'"}, false},
		{"c_int4multirange", "int4multirange", []string{"'{[1,3), [5,7)}'"}, false},
		{"c_tsvector", "tsvector", []string{"'a fat:2 cat:3'"}, false},
		{"c_xml", "xml", []string{`'<a b="1">x &amp; y</a>'`}, false},
		{"c_point", "point", []string{"'(1.5,-2)'"}, false},
		{"c_hstore", "hstore", []string{`'"k"=>"v", "a b"=>NULL'`}, false},
		{"c_composite", "pair", []string{`ROW(1, 'a "b"')`}, false},
	}
}

// matrixColumnsOn returns the columns a server of the version can hold:
// negative numeric scales are new in 15.
func matrixColumnsOn(version int) []matrixColumn {
	return slices.DeleteFunc(matrixColumns(), func(c matrixColumn) bool {
		return version < 150000 && c.name == "c_numeric_neg_scale"
	})
}

const matrixTypes = `CREATE EXTENSION citext; CREATE EXTENSION hstore;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'with space');
CREATE DOMAIN positive AS int8 CHECK (VALUE > 0);
CREATE DOMAIN small_positive AS positive CHECK (VALUE < 100);
CREATE DOMAIN short_text AS varchar(10);
CREATE DOMAIN instant AS timestamptz;
CREATE DOMAIN amount AS numeric(8,2);
CREATE DOMAIN int_list AS int4[];
CREATE TYPE pair AS (a int, b text);`

// matrixRows is the number of rows of values; one more holds NULLs.
func matrixRows(columns []matrixColumn) int {
	n := 0
	for _, c := range columns {
		n = max(n, len(c.values))
	}
	return n
}

// matrixSQL returns the statements that create and fill a table of the
// columns, then update, and delete from, it.
func matrixSQL(table string, columns []matrixColumn, identityFull bool) []string {
	var defs []string
	for _, c := range columns {
		defs = append(defs, c.name+" "+c.sqlType)
	}
	setup := fmt.Sprintf("CREATE TABLE public.%s (id int PRIMARY KEY, %s)", table, strings.Join(defs, ", "))
	if identityFull {
		setup += fmt.Sprintf("; ALTER TABLE public.%s REPLICA IDENTITY FULL", table)
	}
	stmts := []string{setup}
	rows := matrixRows(columns)
	for i := 0; i <= rows; i++ {
		values := []string{fmt.Sprint(i + 1)}
		for _, c := range columns {
			if i == rows {
				values = append(values, "NULL")
			} else {
				values = append(values, c.values[i%len(c.values)])
			}
		}
		stmts = append(stmts, fmt.Sprintf("INSERT INTO public.%s VALUES (%s)", table, strings.Join(values, ", ")))
	}
	// Each row takes its successor's values: every value is both an old
	// and a new one, NULL included. Then a key changes, and rows go.
	var sets []string
	for _, c := range columns {
		sets = append(sets, fmt.Sprintf("%s = n.%s", c.name, c.name))
	}
	stmts = append(stmts,
		fmt.Sprintf("UPDATE public.%[1]s t SET %[2]s FROM public.%[1]s n WHERE n.id = t.id %% %[3]d + 1", table, strings.Join(sets, ", "), rows+1),
		fmt.Sprintf("UPDATE public.%s SET id = id + 1000 WHERE id = 1", table),
		fmt.Sprintf("DELETE FROM public.%s WHERE id %% 2 = 0", table))
	return stmts
}

// keyTable has a key of rewritten types, changed by an update.
const keyTable = `CREATE TABLE public.binary_keys (
	k_ts timestamptz, k_num numeric, k_uuid uuid, k_f8 float8, k_date date, k_text text, k_bool bool, v int,
	PRIMARY KEY (k_ts, k_num, k_uuid, k_f8, k_date, k_text, k_bool));
INSERT INTO public.binary_keys VALUES
	('2024-01-15 14:30:00.5+00', 1.50, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 1.5, '2024-02-29', 'a', true, 1),
	('-infinity', 'NaN', '00000000-0000-0000-0000-000000000000', '-0', '4713-01-01 BC', '', false, 2),
	('0044-03-15 12:00:00+00 BC', '-0.001', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'NaN', 'infinity', 'é', true, 3);
UPDATE public.binary_keys SET v = v + 10;
UPDATE public.binary_keys SET k_num = k_num * 2 WHERE v = 11;
DELETE FROM public.binary_keys WHERE v = 12;`

// differential is a database holding the matrix tables' transactions in a
// slot, and what decoding needs.
type differential struct {
	columns []matrixColumn
	conn    *pgx.Conn
	types   *pgtypes.Registry
	tables  map[sqlcapture.StreamID]*discovery.Table
}

func newDifferential(t *testing.T) *differential {
	ctx := context.Background()
	pg := testsupport.StartPostgres(t, testsupport.Options{Settings: map[string]string{"synchronous_commit": "on"}})
	db := pg.NewDatabase(t)
	d := &differential{conn: sessionConn(t, pg, db)}
	var version int
	if err := d.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version < 140000 {
		t.Skipf("binary replication needs PostgreSQL 14 or later; this is %d", version)
	}
	pg.Exec(t, db, matrixTypes+`
		CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
		CREATE PUBLICATION matrix_pub FOR ALL TABLES;`)
	pg.Exec(t, db, "SELECT pg_create_logical_replication_slot('matrix', 'pgoutput')")
	d.columns = matrixColumnsOn(version)
	columns := d.columns
	var binary []matrixColumn
	for _, c := range columns {
		if c.binary {
			binary = append(binary, c)
		}
	}
	for _, stmt := range slices.Concat(matrixSQL("binary_types", binary, true), matrixSQL("binary_keyed", binary, false),
		matrixSQL("all_types", columns, true), []string{keyTable, "INSERT INTO public.flow_watermarks VALUES ('matrix', 'w1')"}) {
		pg.Exec(t, db, stmt)
	}
	var err error
	if d.types, err = pgtypes.LoadRegistry(ctx, d.conn); err != nil {
		t.Fatal(err)
	}
	tables, err := discovery.ListTables(ctx, d.conn, d.types, discovery.Options{
		Publication: "matrix_pub", WatermarksSchema: "public", WatermarksTable: "flow_watermarks",
	})
	if err != nil {
		t.Fatal(err)
	}
	d.tables = make(map[sqlcapture.StreamID]*discovery.Table)
	for _, tbl := range tables {
		d.tables[sqlcapture.StreamID{Schema: tbl.Schema, Table: tbl.Name}] = tbl
	}
	return d
}

// sessionConn connects with the session settings of the connector's
// replication connection, which fix the text output.
func sessionConn(t *testing.T, pg *testsupport.Postgres, db string) *pgx.Conn {
	t.Helper()
	return pg.ConnectWith(t, db, pgtypes.SessionParams())
}

// messages returns the slot's pgoutput messages, with binary values or not.
func (d *differential) messages(t *testing.T, binary bool) []walMessage {
	mode := "false"
	if binary {
		mode = "true"
	}
	rows, err := d.conn.Query(context.Background(), `SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes('matrix', NULL, NULL,
		'proto_version', '1', 'publication_names', 'matrix_pub', 'binary', $1)`, mode)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []walMessage
	for rows.Next() {
		var lsn string
		var data []byte
		if err := rows.Scan(&lsn, &data); err != nil {
			t.Fatal(err)
		}
		at, err := pglogrepl.ParseLSN(lsn)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, walMessage{uint64(at), data})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// decodeAll runs messages through a Stream capturing the named tables, and
// returns its events as text, and the first decoding error.
func (d *differential) decodeAll(msgs []walMessage, binary bool, tables ...string) ([]string, error) {
	captured := make(map[sqlcapture.StreamID]*discovery.Table)
	for _, name := range tables {
		id := sqlcapture.StreamID{Schema: "public", Table: name}
		captured[id] = d.tables[id]
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := newStream(nil, 0, Options{
		Slot:       "matrix",
		Tables:     captured,
		Watermarks: sqlcapture.StreamID{Schema: "public", Table: "flow_watermarks"},
		Types:      d.types,
		Logger:     log,
		Binary:     binary,
	})
	var events []string
	drain := func() {
		for len(s.events) > 0 {
			b := <-s.events
			for _, ev := range b.Events {
				switch ev := ev.(type) {
				case *sqlcapture.Change:
					events = append(events, fmt.Sprintf("%s %v key %x %s", ev.Stream, ev.Op, ev.Key, ev.Doc))
				default:
					events = append(events, fmt.Sprintf("%T %+v", ev, ev))
				}
			}
			s.Release(b)
		}
	}
	for _, m := range msgs {
		if err := s.decode(m.lsn, m.data); err != nil {
			return events, err
		}
		drain()
	}
	s.flush()
	drain()
	return events, nil
}

// binaryValues counts the values a row message carries in binary.
func binaryValues(t *testing.T, msgs []walMessage) int {
	n := 0
	var m rowMessage
	for _, msg := range msgs {
		switch pglogrepl.MessageType(msg.data[0]) {
		case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
		default:
			continue
		}
		if err := decodeRow(msg.data, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range slices.Concat(m.old.kinds, m.new.kinds) {
			if k == tupleBinary {
				n++
			}
		}
		m.old.kinds = m.old.kinds[:0]
	}
	return n
}

func TestBinaryDocumentsEqualText(t *testing.T) {
	d := newDifferential(t)
	textMsgs, binMsgs := d.messages(t, false), d.messages(t, true)
	if n := binaryValues(t, textMsgs); n != 0 {
		t.Fatalf("the text session carried %d binary values", n)
	}
	if n := binaryValues(t, binMsgs); n == 0 {
		t.Fatal("the binary session carried no binary values: the option was not applied")
	}

	tables := []string{"binary_types", "binary_keyed", "binary_keys"}
	want, err := d.decodeAll(textMsgs, false, tables...)
	if err != nil {
		t.Fatalf("text mode: %v", err)
	}
	got, err := d.decodeAll(binMsgs, true, tables...)
	if err != nil {
		t.Fatalf("binary mode: %v", err)
	}
	changes := 0
	for _, ev := range want {
		if strings.HasPrefix(ev, "public.") {
			changes++
		}
	}
	// Every table's inserts, updates and deletes, and the key change.
	if rows := matrixRows(d.columns) + 1; changes < 2*(2*rows+rows/2) {
		t.Fatalf("only %d changes were decoded", changes)
	}
	if len(got) != len(want) {
		t.Errorf("binary mode produced %d events, text mode %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("event %d differs:\ntext:   %s\nbinary: %s", i, want[i], got[i])
		}
	}
}

// TestBinaryFormsOfTheMatrix pins which types are received in binary: a
// type must not claim it without being in the differential test.
func TestBinaryFormsOfTheMatrix(t *testing.T) {
	d := newDifferential(t)
	tbl := d.tables[sqlcapture.StreamID{Schema: "public", Table: "all_types"}]
	byName := make(map[string]*discovery.Column)
	for _, c := range tbl.Columns {
		byName[c.Name] = c
	}
	for _, c := range d.columns {
		col := byName[c.name]
		if col == nil {
			t.Fatalf("column %s was not discovered", c.name)
		}
		if got := col.Type.BinaryForm() != pgtypes.BinaryUnsupported; got != c.binary {
			t.Errorf("%s (%s): received in binary %v, want %v", c.name, c.sqlType, got, c.binary)
		}
	}
	if ok, why := BinarySafe(map[sqlcapture.StreamID]*discovery.Table{{Schema: "public", Table: "all_types"}: tbl}); ok || why == "" {
		t.Errorf("BinarySafe(all_types) = %v, %q; want false with a reason", ok, why)
	}
	if ok, why := BinarySafe(map[sqlcapture.StreamID]*discovery.Table{{Schema: "public", Table: "binary_types"}: d.tables[sqlcapture.StreamID{Schema: "public", Table: "binary_types"}]}); !ok {
		t.Errorf("BinarySafe(binary_types) = false: %s", why)
	}

	// A binary stream that meets a table with a column it cannot receive
	// in binary ends, transiently, asking for text.
	_, err := d.decodeAll(d.messages(t, true), true, "all_types")
	if !errors.Is(err, ErrTextNeeded) || !sqlcapture.IsTransient(err) {
		t.Fatalf("decoding all_types in binary: %v; want a transient ErrTextNeeded", err)
	}
	if !strings.Contains(err.Error(), `"c_money"`) {
		t.Errorf("the error does not name the column: %v", err)
	}
}
