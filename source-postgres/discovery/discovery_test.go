package discovery

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/pgtypes"
	"pgcapture/testsupport"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.StopShared()
	os.Exit(code)
}

// newDatabase creates a database, runs setup in it, and connects with the
// capture's session parameters.
func newDatabase(t *testing.T, setup string) (*pgx.Conn, *pgtypes.Registry) {
	t.Helper()
	pg := testsupport.SharedPostgres(t)
	db := pg.NewDatabase(t)
	return connectWithSetup(t, pg, db, setup)
}

func connectWithSetup(t *testing.T, pg *testsupport.Postgres, db, setup string) (*pgx.Conn, *pgtypes.Registry) {
	t.Helper()
	if setup != "" {
		pg.Exec(t, db, setup)
	}
	conn := pg.ConnectWith(t, db, pgtypes.SessionParams())
	reg, err := pgtypes.LoadRegistry(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	return conn, reg
}

const discoverySetup = `
CREATE SCHEMA "Weird ""Schema""";
CREATE TABLE public.users (id int4 PRIMARY KEY, name text);
CREATE TABLE public.composite (a text, b int8, c date, dropped int, PRIMARY KEY (c, a));
ALTER TABLE public.composite DROP COLUMN dropped;
ALTER TABLE public.composite ADD COLUMN d text;
CREATE TABLE public.keyless (x int, y text);
CREATE TABLE public.nullable_unique (x int UNIQUE, y text);
CREATE TABLE public.fallback (
    a int NOT NULL, b int NOT NULL, c int NOT NULL, d int, e int NOT NULL, f int NOT NULL);
CREATE UNIQUE INDEX zz_first_by_columns ON public.fallback (a);
CREATE UNIQUE INDEX mm_chosen ON public.fallback (c, b) INCLUDE (f);
CREATE UNIQUE INDEX aa_nullable ON public.fallback (d);
CREATE UNIQUE INDEX ab_partial ON public.fallback (e) WHERE e > 0;
CREATE UNIQUE INDEX ac_expression ON public.fallback ((a + 1));
CREATE INDEX ad_not_unique ON public.fallback (b);
CREATE TABLE public.generated (id int PRIMARY KEY, doubled int GENERATED ALWAYS AS (id * 2) STORED, note text);
CREATE TABLE public.generated_key (id int, g int GENERATED ALWAYS AS (id * 2) STORED PRIMARY KEY);
CREATE TABLE public.full_identity (id int PRIMARY KEY);
ALTER TABLE public.full_identity REPLICA IDENTITY FULL;
CREATE TABLE "Weird ""Schema"""."Tab/le~X" ("Key Col" text PRIMARY KEY, "select" int);
CREATE TABLE public.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.events_2023 PARTITION OF public.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
    PARTITION BY RANGE (id);
CREATE TABLE public.events_2024_low PARTITION OF public.events_2024 FOR VALUES FROM (0) TO (100);
CREATE UNLOGGED TABLE public.unlogged (id int PRIMARY KEY);
CREATE VIEW public.a_view AS SELECT * FROM public.users;
CREATE MATERIALIZED VIEW public.a_matview AS SELECT * FROM public.users;
CREATE FOREIGN DATA WRAPPER dummy_fdw;
CREATE SERVER dummy_server FOREIGN DATA WRAPPER dummy_fdw;
CREATE FOREIGN TABLE public.a_foreign_table (id int) SERVER dummy_server;
CREATE TABLE public.flow_watermarks (slot text PRIMARY KEY, watermark text);
`

func tableNames(tables []*Table) []string {
	var names []string
	for _, t := range tables {
		names = append(names, t.Schema+"."+t.Name)
	}
	return names
}

func TestListTables(t *testing.T) {
	conn, reg := newDatabase(t, discoverySetup)
	opts := Options{Publication: "flow_publication", WatermarksSchema: "public", WatermarksTable: "flow_watermarks"}
	tables, err := ListTables(t.Context(), conn, reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{
		"Weird \"Schema\".Tab/le~X", "public.composite", "public.events", "public.fallback", "public.full_identity",
		"public.generated", "public.generated_key", "public.keyless", "public.nullable_unique", "public.users",
	}
	if got := tableNames(tables); !slices.Equal(got, wantNames) {
		t.Fatalf("without a publication, ListTables = %q, want %q", got, wantNames)
	}
	byName := map[string]*Table{}
	for _, tbl := range tables {
		byName[tbl.Schema+"."+tbl.Name] = tbl
	}

	tests := []struct {
		table             string
		key               []string
		fallback, keyless bool
		columns           []string
		positions         []int
		partitioned       bool
		replicaIdentity   byte
	}{
		{"public.users", []string{"id"}, false, false, []string{"id", "name"}, []int{1, 2}, false, 'd'},
		{"public.composite", []string{"c", "a"}, false, false, []string{"a", "b", "c", "d"}, []int{1, 2, 3, 5}, false, 'd'},
		{"public.keyless", nil, false, true, []string{"x", "y"}, []int{1, 2}, false, 'd'},
		{"public.nullable_unique", nil, false, true, []string{"x", "y"}, []int{1, 2}, false, 'd'},
		{"public.fallback", []string{"c", "b"}, true, false, []string{"a", "b", "c", "d", "e", "f"}, []int{1, 2, 3, 4, 5, 6}, false, 'd'},
		{"public.generated", []string{"id"}, false, false, []string{"id", "doubled", "note"}, []int{1, 2, 3}, false, 'd'},
		{"public.generated_key", nil, false, true, []string{"id", "g"}, []int{1, 2}, false, 'd'},
		{"public.full_identity", []string{"id"}, false, false, []string{"id"}, []int{1}, false, 'f'},
		{"public.events", []string{"id", "at"}, false, false, []string{"id", "at"}, []int{1, 2}, true, 'd'},
		{"Weird \"Schema\".Tab/le~X", []string{"Key Col"}, false, false, []string{"Key Col", "select"}, []int{1, 2}, false, 'd'},
	}
	for _, tc := range tests {
		tbl := byName[tc.table]
		var columns []string
		var positions []int
		for _, c := range tbl.Columns {
			columns = append(columns, c.Name)
			positions = append(positions, c.Position)
		}
		if !slices.Equal(tbl.Key, tc.key) || tbl.IsFallbackKey != tc.fallback || tbl.Keyless != tc.keyless {
			t.Errorf("%s: key %q, fallback %v, keyless %v; want %q, %v, %v",
				tc.table, tbl.Key, tbl.IsFallbackKey, tbl.Keyless, tc.key, tc.fallback, tc.keyless)
		}
		if !slices.Equal(columns, tc.columns) || !slices.Equal(positions, tc.positions) {
			t.Errorf("%s: columns %q at %v, want %q at %v", tc.table, columns, positions, tc.columns, tc.positions)
		}
		if tbl.Partitioned != tc.partitioned || tbl.ReplicaIdentity != tc.replicaIdentity {
			t.Errorf("%s: partitioned %v, replica identity %c; want %v, %c",
				tc.table, tbl.Partitioned, tbl.ReplicaIdentity, tc.partitioned, tc.replicaIdentity)
		}
	}

	gen := byName["public.generated"].Columns
	if gen[0].Generated || !gen[1].Generated || gen[2].Generated {
		t.Errorf("generated flags of public.generated: %v %v %v", gen[0].Generated, gen[1].Generated, gen[2].Generated)
	}
	users := byName["public.users"]
	if id := users.Columns[0]; !id.NotNull || id.TypeName != "integer" || id.Type.Name != "integer" || id.Collation != "" {
		t.Errorf("users.id = %+v", id)
	}
	if name := users.Columns[1]; name.NotNull || name.Collation != "default" {
		t.Errorf("users.name = %+v", name)
	}
	var oid uint32
	if err := conn.QueryRow(t.Context(), "SELECT 'public.users'::regclass::oid").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	if users.OID != oid {
		t.Errorf("users.OID = %d, want %d", users.OID, oid)
	}

	// The publication decides between partition roots and leaves.
	for _, tc := range []struct {
		viaRoot bool
		want    []string
	}{
		{false, []string{"public.events_2023", "public.events_2024_low"}},
		{true, []string{"public.events"}},
	} {
		if _, err := conn.Exec(t.Context(), "DROP PUBLICATION IF EXISTS flow_publication"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(t.Context(), "CREATE PUBLICATION flow_publication FOR ALL TABLES WITH (publish_via_partition_root = "+
			map[bool]string{false: "false", true: "true"}[tc.viaRoot]+")"); err != nil {
			t.Fatal(err)
		}
		tables, err := ListTables(t.Context(), conn, reg, opts)
		if err != nil {
			t.Fatal(err)
		}
		var events []string
		for _, name := range tableNames(tables) {
			if len(name) >= len("public.events") && name[:len("public.events")] == "public.events" {
				events = append(events, name)
			}
		}
		if !slices.Equal(events, tc.want) {
			t.Errorf("with publish_via_partition_root = %v, the events tables are %q, want %q", tc.viaRoot, events, tc.want)
		}
		if tc.viaRoot {
			continue
		}
		for _, tbl := range tables {
			if tbl.Name == "events_2024_low" && (!slices.Equal(tbl.Key, []string{"id", "at"}) || tbl.Partitioned) {
				t.Errorf("leaf partition events_2024_low: key %q, partitioned %v", tbl.Key, tbl.Partitioned)
			}
		}
	}
}

func TestListTablesEmptyDatabase(t *testing.T) {
	conn, reg := newDatabase(t, "")
	tables, err := ListTables(t.Context(), conn, reg, Options{})
	if err != nil || len(tables) != 0 {
		t.Errorf("ListTables of an empty database = %q, %v", tableNames(tables), err)
	}
}

// TestColumnNamedMeta checks that a column named _meta, which would
// collide with the document's metadata, is neither in the document schema
// nor a key column.
func TestColumnNamedMeta(t *testing.T) {
	conn, reg := newDatabase(t, `
CREATE TABLE public.meta_column (id int PRIMARY KEY, "_meta" text, note text);
CREATE TABLE public.meta_key ("_meta" int PRIMARY KEY, alt int NOT NULL UNIQUE);
`)
	tables, err := ListTables(t.Context(), conn, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		schema, err := tbl.DocumentSchema()
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Defs map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"$defs"`
		}
		if err := json.Unmarshal(schema, &doc); err != nil {
			t.Fatal(err)
		}
		for _, def := range doc.Defs {
			if _, ok := def.Properties["_meta"]; ok {
				t.Errorf("the row schema of %s has the column _meta", tbl.Name)
			}
		}
		switch tbl.Name {
		case "meta_column":
			if len(tbl.Columns) != 3 || tbl.Columns[1].InDocuments() || !tbl.Columns[2].InDocuments() {
				t.Errorf("meta_column: want _meta, and only it, left out of documents")
			}
		case "meta_key":
			if !slices.Equal(tbl.Key, []string{"alt"}) || !tbl.IsFallbackKey {
				t.Errorf("meta_key: key %q (fallback %v), want the unique index on alt, as _meta cannot be a key", tbl.Key, tbl.IsFallbackKey)
			}
		}
	}
}

// TestDocumentSchema compares the schema of a representative table with
// testdata/document_schema.json; run with -update to rewrite it.
func TestDocumentSchema(t *testing.T) {
	conn, reg := newDatabase(t, `
CREATE EXTENSION citext;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN email AS citext CHECK (VALUE LIKE '%@%');
CREATE TABLE public."Order Items" (
    id bigint GENERATED ALWAYS AS IDENTITY,
    "line/no" smallint NOT NULL,
    sku varchar(32) NOT NULL,
    code char(4),
    price numeric(12,2),
    weight real NOT NULL,
    fresh boolean,
    mood mood,
    contact email,
    tags text[],
    attrs jsonb,
    photo bytea,
    ref uuid,
    ordered_on date,
    ordered_at timestamptz(3) NOT NULL DEFAULT now(),
    local_time time,
    duration interval,
    addr inet,
    total numeric GENERATED ALWAYS AS (price * 2) STORED,
    PRIMARY KEY (id, "line/no")
);
COMMENT ON COLUMN public."Order Items".sku IS 'Stock keeping unit';
CREATE TABLE public.measurements (at float8 PRIMARY KEY, v int);
`)
	tables, err := ListTables(t.Context(), conn, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		if tbl.Name == "measurements" {
			// A float key is a string in documents, as Flow keys cannot be
			// numbers; other float columns stay numbers.
			key, err := tbl.Columns[0].JSONType().AppendJSON(nil, []byte("1.5"))
			if err != nil || string(key) != `"1.5"` || tbl.Columns[1].JSONType() != tbl.Columns[1].Type {
				t.Errorf("the float key column is emitted as %s, %v; want \"1.5\"", key, err)
			}
		}
		schema, err := tbl.DocumentSchema()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.ContainsAny(schema, "\n\r") {
			t.Errorf("the schema of %s contains a newline", tbl.Name)
		}
		var indented bytes.Buffer
		if err := json.Indent(&indented, schema, "", "  "); err != nil {
			t.Fatal(err)
		}
		indented.WriteByte('\n')
		golden := filepath.Join("testdata", tbl.RecommendedName()[len("public/"):]+".schema.json")
		if *update {
			if err := os.WriteFile(golden, indented.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run the test with -update to create it)", err)
		}
		if !bytes.Equal(indented.Bytes(), want) {
			t.Errorf("the schema of %s differs from %s (run the test with -update to accept it):\n%s",
				tbl.QuotedName(), golden, indented.Bytes())
		}
	}
}

// TestWhyNotListed checks, for every relation of a database under both
// kinds of publication, that WhyNotListed explains exactly the relations
// ListTables leaves out, and what it says of some.
func TestWhyNotListed(t *testing.T) {
	conn, reg := newDatabase(t, discoverySetup)
	opts := Options{Publication: "flow_publication", WatermarksSchema: "public", WatermarksTable: "flow_watermarks"}
	if _, err := conn.Exec(t.Context(), "CREATE TEMPORARY TABLE a_temp (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	for _, viaRoot := range []string{"true", "false"} {
		if _, err := conn.Exec(t.Context(), "DROP PUBLICATION IF EXISTS flow_publication; "+
			"CREATE PUBLICATION flow_publication FOR ALL TABLES WITH (publish_via_partition_root = "+viaRoot+")"); err != nil {
			t.Fatal(err)
		}
		tables, err := ListTables(t.Context(), conn, reg, opts)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, tbl := range tables {
			listed[tbl.Schema+"."+tbl.Name] = true
		}
		// System schemas included, and a temporary table in pg_temp_N.
		rows, err := conn.Query(t.Context(), `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')`)
		if err != nil {
			t.Fatal(err)
		}
		var names [][2]string
		for rows.Next() {
			var n [2]string
			if err := rows.Scan(&n[0], &n[1]); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		why := map[string]string{}
		for _, n := range names {
			reason, err := WhyNotListed(t.Context(), conn, n[0], n[1], opts)
			if err != nil {
				t.Fatal(err)
			}
			if (reason == "") != listed[n[0]+"."+n[1]] {
				t.Errorf("publish_via_partition_root = %s: %s.%s is listed %v, but WhyNotListed says %q", viaRoot, n[0], n[1], listed[n[0]+"."+n[1]], reason)
			}
			why[n[1]] = reason
		}
		for table, want := range map[string]string{
			"a_view":          "is a view",
			"a_matview":       "is a materialized view",
			"a_foreign_table": "is a foreign table",
			"unlogged":        "is unlogged",
			"flow_watermarks": "watermarks table",
			"a_temp":          "is in the system schema \"pg_temp_",
			"pg_class":        `is in the system schema "pg_catalog"`,
			"events_2024_low": map[string]string{"true": `is a partition of public.events: `, "false": ""}[viaRoot],
			"events_2024":     map[string]string{"true": `is a partition of public.events: `, "false": "ALTER PUBLICATION"}[viaRoot],
			"events":          map[string]string{"true": "", "false": `is a partitioned table, and publication "flow_publication" publishes`}[viaRoot],
		} {
			if got := why[table]; want == "" && got != "" || !strings.Contains(got, want) {
				t.Errorf("publish_via_partition_root = %s: %s %q, want %q", viaRoot, table, got, want)
			}
		}
	}
	for _, n := range [][2]string{{"public", "Users"}, {"pg_catalog", "pg_class"}} {
		if reason, err := WhyNotListed(t.Context(), conn, n[0], n[1], opts); err != nil || reason == "" {
			t.Errorf("%s.%s: %q, %v; want a reason", n[0], n[1], reason, err)
		}
	}
}
