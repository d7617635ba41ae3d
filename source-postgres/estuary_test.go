package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// estuaryConfig is the fixture's endpoint configuration as Estuary's
// source-postgres takes it: the password under credentials, and Estuary's
// advanced options.
func (f *fixture) estuaryConfig(advanced map[string]any) map[string]any {
	adv := map[string]any{
		"slotName":              f.slot,
		"publicationName":       "flow_publication",
		"watermarksTable":       "public.flow_watermarks",
		"sslmode":               "disable",
		"backfill_chunk_size":   100,
		"statement_timeout":     "5m",
		"read_only_capture":     false,
		"min_backfill_xid":      "",
		"capture_as_partitions": false,
		"rediscovery_interval":  "15m",
		"feature_flags":         "",
		"discover_schemas":      []string{},
	}
	for k, v := range advanced {
		adv[k] = v
	}
	return map[string]any{
		"address":     f.pg.Addr(),
		"database":    f.db,
		"user":        "postgres",
		"credentials": map[string]any{"auth_type": "UserPassword", "password": "postgres"},
		"historyMode": false,
		"advanced":    adv,
	}
}

// TestResumeFromEstuaryState opens a capture with the checkpoint Estuary's
// source-postgres would have left: its cursor before changes made since,
// a table backfilled, one halfway through a keyed backfill, one halfway
// through a keyless one, and one whose position this connector cannot
// continue from. Nothing may be lost, and nothing before the checkpoint's
// position emitted again.
func TestResumeFromEstuaryState(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE EXTENSION citext;
		CREATE TABLE public.done_t (id int PRIMARY KEY, v text);
		INSERT INTO public.done_t SELECT g, 'v' || g FROM generate_series(1, 100) g;
		CREATE TABLE public.partial_t (id bigint PRIMARY KEY, v text);
		INSERT INTO public.partial_t SELECT g, 'v' || g FROM generate_series(1, 1000) g;
		CREATE TABLE public.keyless_t (n int, pad text);
		INSERT INTO public.keyless_t SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g;
		CREATE TABLE public.ci_t (name citext PRIMARY KEY);
		INSERT INTO public.ci_t SELECT 'name' || g FROM generate_series(1, 20) g;
		CREATE TABLE public.flow_watermarks (slot text PRIMARY KEY, watermark text)`)

	// The slot at a known position, which Estuary's cursor names; then
	// changes that the resumed capture must deliver.
	var cursor string
	if err := f.conn.QueryRow(context.Background(), `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, f.slot).Scan(&cursor); err != nil {
		t.Fatal(err)
	}
	// Rows Estuary's keyless backfill read: every block below 10.
	var keylessBefore []int
	rows, err := f.conn.Query(context.Background(), `SELECT n FROM public.keyless_t WHERE ctid < '(10,0)'::tid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		keylessBefore = append(keylessBefore, n)
	}
	if rows.Err() != nil || len(keylessBefore) == 0 || len(keylessBefore) == 2000 {
		t.Fatalf("keyless_t has %d rows below block 10 (%v); the test needs some, not all", len(keylessBefore), rows.Err())
	}
	f.exec(t, `INSERT INTO public.done_t VALUES (101, 'new');
		UPDATE public.done_t SET v = 'changed' WHERE id = 5;
		DELETE FROM public.done_t WHERE id = 6;
		UPDATE public.partial_t SET v = 'changed' WHERE id IN (100, 900);
		DELETE FROM public.partial_t WHERE id = 200;
		INSERT INTO public.partial_t VALUES (2000, 'new');
		INSERT INTO public.keyless_t VALUES (5000, 'new')`)

	fdb := func(b ...byte) string { return base64.StdEncoding.EncodeToString(b) }
	state := map[string]any{
		"cursor": cursor,
		"bindingStateV1": map[string]any{
			"public%2Fdone_t":    map[string]any{"mode": "Active", "key_columns": []string{"id"}, "scanned": nil, "backfilled": 100},
			"public%2Fpartial_t": map[string]any{"mode": "Backfill", "key_columns": []string{"id"}, "scanned": fdb(0x16, 0x01, 0xf4), "backfilled": 500}, // (500)
			"public%2Fkeyless_t": map[string]any{"mode": "KeylessBackfill", "key_columns": nil, "scanned": fdb([]byte("(10,0)")...), "backfilled": len(keylessBefore)},
			"public%2Fci_t":      map[string]any{"mode": "UnfilteredBackfill", "key_columns": []string{"name"}, "scanned": fdb(append(append([]byte{0x02}, "name5"...), 0)...), "backfilled": 5},
			"public%2Fold_table": map[string]any{"mode": "Ignore", "key_columns": nil, "scanned": nil, "metadata": nil, "backfilled": 0},
		},
	}
	rawState, _ := json.Marshal(state)
	bindings := []testsupport.Binding{
		{Namespace: "public", Stream: "done_t", Key: []string{"/id"}},
		{Namespace: "public", Stream: "partial_t", Key: []string{"/id"}},
		{Namespace: "public", Stream: "keyless_t", Mode: "Without Primary Key", Key: []string{"/_meta/source/loc/0", "/_meta/source/loc/1", "/_meta/source/loc/2"}},
		{Namespace: "public", Stream: "ci_t", Key: []string{"/name"}},
	}
	for _, b := range bindings {
		if key := protocol.StateKey([]string{b.Namespace, b.Stream}, 0); state["bindingStateV1"].(map[string]any)[key] == nil {
			t.Fatalf("the runtime's state key %q is not Estuary's", key)
		}
	}
	cfg := f.estuaryConfig(map[string]any{"source_tag": "migrated"})
	s := f.connector.Open(t, testsupport.OpenRequest(cfg, bindings, rawState), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 60*time.Second, "every binding backfilled and done_t's three changes", func(s *testsupport.Session) bool {
		st := s.State()
		for _, b := range bindings {
			if streamMode(t, st, protocol.StateKey([]string{b.Namespace, b.Stream}, 0)) != "Active" {
				return false
			}
		}
		return len(docsOf(s, 0)) >= 3 && len(docsOf(s, 2)) >= len(keylessBefore)/10
	})
	if !strings.Contains(s.Stderr(), "migrated the checkpoint of Estuary's source-postgres") {
		t.Error("no log line says the state was migrated")
	}
	var final map[string]json.RawMessage
	if err := json.Unmarshal(s.State(), &final); err != nil {
		t.Fatalf("the final state is not a JSON object: %v: %s", err, s.State())
	}
	if _, ok := final["bindingStateV1"]; ok {
		t.Errorf("Estuary's bindings are still in the state: %s", s.State())
	}
	for _, c := range s.Docs() {
		if !strings.Contains(string(c.Doc), `"tag":"migrated"`) {
			t.Errorf("a document lacks _meta.source.tag: %.200s", c.Doc)
		}
	}

	// done_t: exactly its three changes, no backfill.
	var done []string
	for _, raw := range docsOf(s, 0) {
		d := parseDoc(t, raw)
		done = append(done, d.Meta.Op+":"+jsonText(t, d.Fields["id"]))
	}
	if want := []string{"c:101", "u:5", "d:6"}; !slices.Equal(done, want) {
		t.Errorf("done_t documents %v, want only the changes after the checkpoint %v", done, want)
	}

	// partial_t: rows above 500 backfilled once each, rows at or below it
	// only through their changes; reduced over what Estuary's capture had
	// emitted (rows 1..500 as they were), the collection is the table.
	seen := map[string]int{}
	var replicatedLow []string
	for _, raw := range docsOf(s, 1) {
		d := parseDoc(t, raw)
		id := d.Fields["id"].(float64)
		switch {
		case d.Meta.Source.Snapshot && id <= 500:
			t.Errorf("partial_t row %v, before the checkpoint's position, was backfilled again", id)
		case d.Meta.Source.Snapshot:
			seen[jsonText(t, id)]++
		case id <= 500:
			replicatedLow = append(replicatedLow, d.Meta.Op+":"+jsonText(t, id))
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("partial_t row %s was backfilled %d times", id, n)
		}
	}
	if want := []string{"u:100", "d:200"}; !slices.Equal(replicatedLow, want) {
		t.Errorf("partial_t changes at or below the position: %v, want %v", replicatedLow, want)
	}
	var estuaryDocs []json.RawMessage
	for id := 1; id <= 500; id++ {
		estuaryDocs = append(estuaryDocs, json.RawMessage(`{"_meta":{"op":"c"},"id":`+jsonText(t, id)+`,"v":"v`+jsonText(t, id)+`"}`))
	}
	if d := diffAgainstTable(t, f, append(estuaryDocs, docsOf(s, 1)...), []string{"/id"},
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM public.partial_t`); !d.ok() {
		t.Errorf("partial_t: %s", d)
	}

	// keyless_t: no row of the blocks Estuary read is backfilled again;
	// every other row is, and the insert is replicated.
	var backfilled []int
	replicatedInsert := false
	for _, raw := range docsOf(s, 2) {
		d := parseDoc(t, raw)
		n := int(d.Fields["n"].(float64))
		if d.Meta.Source.Snapshot {
			backfilled = append(backfilled, n)
		} else if n == 5000 {
			replicatedInsert = true
		}
	}
	for _, n := range backfilled {
		if slices.Contains(keylessBefore, n) {
			t.Errorf("keyless_t row %d, in a block Estuary's backfill read, was backfilled again", n)
			break
		}
	}
	if want := 2001 - len(keylessBefore); len(backfilled) != want || !replicatedInsert {
		t.Errorf("keyless_t: %d rows backfilled, want %d; insert replicated: %t", len(backfilled), want, replicatedInsert)
	}

	// ci_t: citext keys are read in byte order here, not in citext's order
	// as Estuary's backfill read them, so its backfill starts over.
	if n := len(docsOf(s, 3)); n != 20 {
		t.Errorf("ci_t: %d documents, want its 20 rows backfilled again", n)
	}
	if !strings.Contains(s.Stderr(), "starts again from its first row") {
		t.Error("no warning says ci_t's backfill starts again")
	}
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	return string(mustMarshal(t, v))
}

// TestEstuaryConfigShapesDiscoveryAndDocuments discovers and captures with
// Estuary's options that change what is offered and emitted: discovery
// filters, historyMode, source_tag and flatten_arrays; and checks that the
// options accepted without effect are logged as such.
func TestEstuaryConfigShapesDiscoveryAndDocuments(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE SCHEMA audit;
		CREATE TABLE public.orders (id int PRIMARY KEY, grid int[]);
		INSERT INTO public.orders VALUES (1, '{{1,2},{3,4}}');
		CREATE TABLE public.customers (id int PRIMARY KEY);
		CREATE TABLE audit.orders_log (id int PRIMARY KEY)`)
	cfg := f.estuaryConfig(map[string]any{"source_tag": "eu", "feature_flags": "flatten_arrays", "read_only_capture": true})
	cfg["historyMode"] = true
	cfg["discoveryFilters"] = map[string]any{"exclude_schemas": []string{"audit"}, "table_patterns": []string{"ord*"}}

	resp, stderr, err := f.connector.Call(t, map[string]any{"discover": map[string]any{"connectorType": "IMAGE", "config": cfg}})
	if err != nil {
		t.Fatalf("discover: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "read_only_capture") {
		t.Errorf("no warning explains read_only_capture:\n%s", stderr)
	}
	var body struct {
		Bindings []discovered `json:"bindings"`
	}
	if err := json.Unmarshal(resp["discovered"], &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Bindings) != 1 || body.Bindings[0].RecommendedName != "public/orders" {
		t.Fatalf("discovered %+v, want only public/orders", body.Bindings)
	}
	schema := string(body.Bindings[0].DocumentSchema)
	for _, want := range []string{`"tag":{`, `"strategy":"lastWriteWins"`, `"items":{"type":["integer","null"]}`} {
		if !strings.Contains(schema, want) {
			t.Errorf("the schema lacks %s: %s", want, schema)
		}
	}

	bindings := []testsupport.Binding{{Namespace: "public", Stream: "orders", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(cfg, bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "orders"}, 0)) == "Active"
	})
	f.exec(t, `INSERT INTO public.orders VALUES (2, '{{5},{6}}')`)
	s.WaitFor(t, 30*time.Second, "the insert", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) == 2 })
	validator := strictValidator(t, body.Bindings[0].DocumentSchema)
	docs := docsOf(s, 0)
	validateDocs(t, validator, docs)
	for i, want := range []string{`"grid":[1,2,3,4]`, `"grid":[5,6]`} {
		if !strings.Contains(string(docs[i]), want) || !strings.Contains(string(docs[i]), `"tag":"eu"`) {
			t.Errorf("document %d lacks %s or the source tag: %s", i, want, docs[i])
		}
	}
}
