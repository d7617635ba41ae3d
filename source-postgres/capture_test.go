package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.StopShared()
	os.Exit(code)
}

// fixture is one test's database on the shared cluster, with a publication
// of all its tables and a replication slot name of its own.
type fixture struct {
	pg        *testsupport.Postgres
	db        string
	conn      *pgx.Conn
	connector *testsupport.Connector
	slot      string
	advanced  map[string]any
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, testsupport.SharedPostgres(t))
}

// newFixtureOn is newFixture on a cluster of the test's own.
func newFixtureOn(t *testing.T, pg *testsupport.Postgres) *fixture {
	t.Helper()
	db := pg.NewDatabase(t)
	h := fnv.New64a()
	h.Write([]byte(db))
	f := &fixture{
		pg:        pg,
		db:        db,
		conn:      pg.Connect(t, db),
		connector: &testsupport.Connector{Path: testsupport.BuildConnector(t), Env: []string{"LOG_LEVEL=debug"}},
		slot:      fmt.Sprintf("test_%x", h.Sum64()),
		advanced:  map[string]any{},
	}
	f.exec(t, "CREATE PUBLICATION flow_publication FOR ALL TABLES WITH (publish_via_partition_root = true)")
	return f
}

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	f.pg.Exec(t, f.db, sql, args...)
}

func (f *fixture) config() map[string]any {
	advanced := map[string]any{"slotName": f.slot, "sslmode": "disable"}
	for k, v := range f.advanced {
		advanced[k] = v
	}
	return map[string]any{
		"address":  f.pg.Addr(),
		"database": f.db,
		"user":     "postgres",
		"password": "postgres",
		"advanced": advanced,
	}
}

type discovered struct {
	RecommendedName string          `json:"recommendedName"`
	ResourceConfig  json.RawMessage `json:"resourceConfig"`
	DocumentSchema  json.RawMessage `json:"documentSchema"`
	Key             []string        `json:"key"`
	IsFallbackKey   bool            `json:"isFallbackKey"`
}

func (f *fixture) discover(t *testing.T) map[string]discovered {
	t.Helper()
	resp, stderr, err := f.connector.Call(t, map[string]any{"discover": map[string]any{"connectorType": "IMAGE", "config": f.config()}})
	if err != nil {
		t.Fatalf("discover: %v\n%s", err, stderr)
	}
	var body struct {
		Bindings []discovered `json:"bindings"`
	}
	if err := json.Unmarshal(resp["discovered"], &body); err != nil {
		t.Fatalf("discovered: %v: %s", err, resp["discovered"])
	}
	out := map[string]discovered{}
	for _, b := range body.Bindings {
		out[b.RecommendedName] = b
	}
	return out
}

// doc is the part of a captured document the tests inspect.
type doc struct {
	Meta struct {
		Op     string `json:"op"`
		Source struct {
			Schema   string  `json:"schema"`
			Table    string  `json:"table"`
			Loc      []int64 `json:"loc"`
			TsMs     int64   `json:"ts_ms"`
			TxID     int64   `json:"txid"`
			Snapshot bool    `json:"snapshot"`
		} `json:"source"`
		Before map[string]any `json:"before"`
	} `json:"_meta"`
	Fields map[string]any `json:"-"`
}

func parseDoc(t *testing.T, raw json.RawMessage) doc {
	t.Helper()
	var d doc
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("document %s: %v", raw, err)
	}
	if err := json.Unmarshal(raw, &d.Fields); err != nil {
		t.Fatal(err)
	}
	delete(d.Fields, "_meta")
	return d
}

func docsOf(s *testsupport.Session, binding int) []json.RawMessage {
	var out []json.RawMessage
	for _, c := range s.Docs() {
		if c.Binding == binding {
			out = append(out, c.Doc)
		}
	}
	return out
}

// streamMode returns the checkpointed mode of a binding's state.
func streamMode(t *testing.T, state json.RawMessage, stateKey string) string {
	t.Helper()
	var st struct {
		Streams map[string]struct {
			Mode string `json:"mode"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatalf("state %s: %v", state, err)
	}
	return st.Streams[stateKey].Mode
}

func cursorOf(t *testing.T, state json.RawMessage) pglogrepl.LSN {
	t.Helper()
	var st struct {
		Cursor string `json:"cursor"`
	}
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	if st.Cursor == "" {
		return 0
	}
	lsn, err := pglogrepl.ParseLSN(st.Cursor)
	if err != nil {
		t.Fatalf("cursor %q: %v", st.Cursor, err)
	}
	return lsn
}

func (f *fixture) confirmedFlush(t *testing.T) pglogrepl.LSN {
	t.Helper()
	var s string
	err := f.conn.QueryRow(context.Background(), "SELECT COALESCE(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", f.slot).Scan(&s)
	if err != nil {
		t.Fatalf("reading the slot's confirmed_flush_lsn: %v", err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// reduceAgainstTable reduces a binding's documents by key and compares them
// with the table's rows, rendered by PostgreSQL as JSON through the same
// text forms the connector emits.
func reduceAgainstTable(t *testing.T, f *fixture, docs []json.RawMessage, key []string, query string) {
	t.Helper()
	reduced, err := testsupport.Reduce(docs, key)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, raw := range reduced {
		d := parseDoc(t, raw)
		b, _ := json.Marshal(d.Fields)
		got[k] = string(b)
	}
	rows, err := f.conn.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for rows.Next() {
		var k, row string
		if err := rows.Scan(&k, &row); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(row), &m); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m)
		want[k] = string(b)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("row %s: collection has %s, table has %s", k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("row %s is in the collection (%s) but not in the table", k, g)
		}
	}
}

func TestSpecBothCodecs(t *testing.T) {
	bin := testsupport.BuildConnector(t)
	c := &testsupport.Connector{Path: bin}
	resp, stderr, err := c.Call(t, map[string]any{"spec": map[string]any{}})
	if err != nil {
		t.Fatalf("spec: %v\n%s", err, stderr)
	}
	var spec struct {
		Protocol             int             `json:"protocol"`
		ConfigSchema         json.RawMessage `json:"configSchema"`
		ResourceConfigSchema json.RawMessage `json:"resourceConfigSchema"`
		DocumentationURL     string          `json:"documentationUrl"`
		ResourcePathPointers []string        `json:"resourcePathPointers"`
	}
	if err := json.Unmarshal(resp["spec"], &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Protocol != 3032023 || len(spec.ConfigSchema) < 100 || len(spec.ResourceConfigSchema) < 20 || spec.DocumentationURL == "" ||
		!slices.Equal(spec.ResourcePathPointers, []string{"/namespace", "/stream"}) {
		t.Errorf("unexpected spec response: %s", resp["spec"])
	}

	// The proto codec, as the runtime's start-up probe sends it: an empty
	// Spec request, framed with a 4-byte little-endian length.
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "FLOW_RUNTIME_CODEC=proto")
	cmd.Stdin = bytes.NewReader([]byte{0x02, 0, 0, 0, 0x0A, 0x00})
	var stdout, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("proto spec: %v\n%s", err, errOut.String())
	}
	out := stdout.Bytes()
	if len(out) < 4 || int(binary.LittleEndian.Uint32(out)) != len(out)-4 {
		t.Fatalf("proto spec: not exactly one length-prefixed frame: % x", out[:min(len(out), 16)])
	}
	// Response field 1 (spec), then Spec field 1 (protocol) = 3032023.
	if out[4] != 0x0A || !bytes.Contains(out[4:16], []byte{0x08, 0xD7, 0x87, 0xB9, 0x01}) {
		t.Errorf("proto spec response does not carry protocol 3032023: % x", out[:16])
	}

	// An unknown codec is refused, with the reason last on stderr.
	cmd = exec.Command(bin)
	cmd.Env = append(os.Environ(), "FLOW_RUNTIME_CODEC=yaml")
	cmd.Stdin = strings.NewReader(`{"spec":{}}` + "\n")
	errOut.Reset()
	cmd.Stderr = &errOut
	if err := cmd.Run(); err == nil || !strings.Contains(lastLine(errOut.String()), "FLOW_RUNTIME_CODEC") {
		t.Errorf("a bad codec should fail naming FLOW_RUNTIME_CODEC; got %v, stderr %q", err, errOut.String())
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestDiscovery(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.users (id integer PRIMARY KEY, name text NOT NULL, email varchar(200))`)
	f.exec(t, `CREATE TABLE public.line_items (order_id bigint, line smallint, sku text, PRIMARY KEY (line, order_id))`)
	f.exec(t, `CREATE TABLE public.events (id bigint, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`)
	f.exec(t, `CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`)
	f.exec(t, `CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`)
	f.exec(t, `CREATE SCHEMA "Odd Schema"`)
	f.exec(t, `CREATE TABLE "Odd Schema"."Mixed Case" ("Id" int PRIMARY KEY, "select" text, "with space" int)`)
	f.exec(t, `CREATE TABLE "Odd Schema"."mixed case" (id int PRIMARY KEY)`)
	f.exec(t, `CREATE TABLE public."quo""te" (id int PRIMARY KEY)`)
	f.exec(t, `CREATE VIEW public.users_view AS SELECT * FROM public.users`)
	f.exec(t, `CREATE TABLE public.flow_watermarks (slot text PRIMARY KEY, watermark text)`)

	got := f.discover(t)
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"Odd_Schema/Mixed_Case", "Odd_Schema/mixed_case", "public/events", "public/line_items", "public/quo_te", "public/users"}
	if !slices.Equal(names, want) {
		t.Fatalf("discovered %v, want %v (views, partitions and the watermarks table excluded)", names, want)
	}
	for name, key := range map[string][]string{
		"public/users":          {"/id"},
		"public/line_items":     {"/line", "/order_id"},
		"public/events":         {"/id", "/at"},
		"Odd_Schema/Mixed_Case": {"/Id"},
	} {
		if !slices.Equal(got[name].Key, key) {
			t.Errorf("%s: key %v, want %v", name, got[name].Key, key)
		}
	}
	var res map[string]string
	if err := json.Unmarshal(got["Odd_Schema/Mixed_Case"].ResourceConfig, &res); err != nil {
		t.Fatal(err)
	}
	if res["namespace"] != "Odd Schema" || res["stream"] != "Mixed Case" {
		t.Errorf("resource config %v does not name the table exactly", res)
	}
	for name, b := range got {
		if _, err := testsupport.NewSchemaValidator(b.DocumentSchema); err != nil {
			t.Errorf("%s: documentSchema does not compile: %v", name, err)
		}
	}
}

func TestCaptureLifecycle(t *testing.T) {
	f := newFixture(t)
	// One chunk at a time, so that the backfill is in key order, which
	// this test checks.
	f.advanced["backfill_connections"] = 1
	f.advanced["backfill_chunk_size"] = 2
	f.exec(t, `CREATE TABLE public.users (id integer PRIMARY KEY, name text NOT NULL, score numeric(10,2))`)
	f.exec(t, `INSERT INTO public.users SELECT g, 'user ' || g, g * 1.5 FROM generate_series(1, 5) g`)
	f.exec(t, `CREATE TABLE public.line_items (order_id bigint, line smallint, sku text, PRIMARY KEY (order_id, line))`)
	f.exec(t, `INSERT INTO public.line_items VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c')`)

	schemas := f.discover(t)
	validators := map[int]*testsupport.SchemaValidator{}
	for i, name := range []string{"public/users", "public/line_items"} {
		v, err := testsupport.NewSchemaValidator(schemas[name].DocumentSchema)
		if err != nil {
			t.Fatal(err)
		}
		validators[i] = v
	}
	bindings := []testsupport.Binding{
		{Namespace: "public", Stream: "users", Key: []string{"/id"}},
		{Namespace: "public", Stream: "line_items", Key: []string{"/order_id", "/line"}},
	}
	usersKey := protocol.StateKey([]string{"public", "users"}, 0)
	itemsKey := protocol.StateKey([]string{"public", "line_items"}, 0)
	checkDocs := func(s *testsupport.Session) {
		t.Helper()
		for _, c := range s.Docs() {
			if err := validators[c.Binding].Validate(c.Doc); err != nil {
				t.Error(err)
			}
		}
	}
	usersQuery := `SELECT json_build_array(id)::text, json_build_object('id', id, 'name', name, 'score', score::text)::text FROM public.users`

	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitOpened(t, 30*time.Second)
	if s.Opened()["explicitAcknowledgements"] != true {
		t.Errorf("opened %v does not ask for explicit acknowledgements", s.Opened())
	}
	s.WaitFor(t, 30*time.Second, "both tables backfilled", func(s *testsupport.Session) bool {
		st := s.State()
		return streamMode(t, st, usersKey) == "Active" && streamMode(t, st, itemsKey) == "Active"
	})
	backfill := docsOf(s, 0)
	if len(backfill) != 5 {
		t.Fatalf("backfill emitted %d users documents, want 5", len(backfill))
	}
	for i, raw := range backfill {
		d := parseDoc(t, raw)
		if d.Meta.Op != "c" || !d.Meta.Source.Snapshot || len(d.Meta.Source.Loc) != 3 || d.Meta.Source.Loc[0] != -1 ||
			d.Meta.Source.Schema != "public" || d.Meta.Source.Table != "users" {
			t.Errorf("backfill document %d has wrong _meta: %s", i, raw)
		}
		if d.Fields["id"] != float64(i+1) {
			t.Errorf("backfill document %d is out of key order: %s", i, raw)
		}
	}
	if n := len(docsOf(s, 1)); n != 3 {
		t.Errorf("backfill emitted %d line_items documents, want 3", n)
	}

	f.exec(t, `INSERT INTO public.users VALUES (6, 'six', 6.25)`)
	f.exec(t, `UPDATE public.users SET name = 'one!' WHERE id = 1`)
	f.exec(t, `DELETE FROM public.users WHERE id = 2`)
	f.exec(t, `UPDATE public.line_items SET sku = 'z' WHERE order_id = 2`)
	s.WaitFor(t, 30*time.Second, "the insert, update and delete", func(s *testsupport.Session) bool {
		return len(docsOf(s, 0)) >= 8 && len(docsOf(s, 1)) >= 4
	})
	changes := docsOf(s, 0)[5:]
	var prevLoc []int64
	for i, want := range []struct {
		op string
		id float64
	}{{"c", 6}, {"u", 1}, {"d", 2}} {
		d := parseDoc(t, changes[i])
		src := d.Meta.Source
		if d.Meta.Op != want.op || d.Fields["id"] != want.id || src.Snapshot || src.TsMs == 0 || src.TxID == 0 || len(src.Loc) != 3 {
			t.Errorf("change %d: want op %s id %v with replication _meta, got %s", i, want.op, want.id, changes[i])
		}
		if prevLoc != nil && slices.Compare(src.Loc, prevLoc) <= 0 {
			t.Errorf("change %d: loc %v does not follow %v", i, src.Loc, prevLoc)
		}
		prevLoc = src.Loc
	}
	if del := parseDoc(t, changes[2]); len(del.Fields) != 1 {
		t.Errorf("a delete under the default replica identity should carry only the key: %s", changes[2])
	}
	checkDocs(s)
	reduceAgainstTable(t, f, docsOf(s, 0), []string{"/id"}, usersQuery)

	// Restart from the acknowledged state: no backfill again, and changes
	// made while the capture was down arrive.
	s.Kill()
	state := s.AckedState()
	f.exec(t, `INSERT INTO public.users VALUES (7, 'seven', NULL)`)
	f.exec(t, `UPDATE public.users SET score = 99.99 WHERE id = 3`)
	s2 := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, state), testsupport.SessionOptions{AutoAck: true})
	s2.WaitFor(t, 30*time.Second, "the changes made while stopped", func(s *testsupport.Session) bool {
		return len(docsOf(s, 0)) >= 2
	})
	for _, raw := range docsOf(s2, 0) {
		if parseDoc(t, raw).Meta.Source.Snapshot {
			t.Errorf("the restarted capture backfilled again: %s", raw)
		}
	}
	checkDocs(s2)
	all := append(docsOf(s, 0), docsOf(s2, 0)...)
	reduceAgainstTable(t, f, all, []string{"/id"}, usersQuery)
}

func TestAcknowledgementsHoldTheSlot(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, v text)`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{})
	key := protocol.StateKey([]string{"public", "t"}, 0)
	s.WaitFor(t, 30*time.Second, "the empty table backfilled", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), key) == "Active"
	})
	start := f.confirmedFlush(t)

	for i := range 5 {
		f.exec(t, `INSERT INTO public.t VALUES ($1, 'x')`, i)
	}
	s.WaitFor(t, 30*time.Second, "checkpoints after the inserts", func(s *testsupport.Session) bool {
		return len(s.Docs()) == 5
	})
	emitted := cursorOf(t, s.State())
	if emitted <= start {
		t.Fatalf("checkpoint cursor %s does not pass the slot's start %s", emitted, start)
	}
	// Without acknowledgements the slot must not move past what it had,
	// whatever the connector emitted; give it every chance to misbehave by
	// waiting for its periodic status updates.
	time.Sleep(12 * time.Second)
	if got := f.confirmedFlush(t); got > start {
		t.Fatalf("confirmed_flush_lsn moved to %s without any acknowledgement (start %s)", got, start)
	}

	s.Ack(len(s.Checkpoints()))
	s.WaitFor(t, 30*time.Second, "confirmed_flush_lsn to follow the acknowledgement", func(*testsupport.Session) bool {
		return f.confirmedFlush(t) >= emitted
	})
	if got := f.confirmedFlush(t); got > cursorOf(t, s.State()) {
		t.Errorf("confirmed_flush_lsn %s passed the newest checkpoint %s", got, cursorOf(t, s.State()))
	}
}
