package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// pollingFixture is a database on a cluster without logical replication
// (wal_level = replica), captured by a user without REPLICATION.
type pollingFixture struct {
	*fixture
}

func newPollingFixture(t *testing.T) *pollingFixture {
	t.Helper()
	t.Parallel()
	pg := testsupport.StartPostgres(t, testsupport.Options{Settings: map[string]string{"wal_level": "replica"}})
	f := &pollingFixture{newFixtureOn(t, pg)}
	f.exec(t, "CREATE ROLE poller LOGIN PASSWORD 'poller' NOREPLICATION")
	f.exec(t, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO poller")
	f.exec(t, "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO poller")
	return f
}

func (f *pollingFixture) config() map[string]any {
	cfg := f.fixture.config()
	cfg["user"], cfg["password"] = "poller", "poller"
	return cfg
}

func queryBinding(name, query string, ids, cursor []string) testsupport.Binding {
	res := map[string]any{"namespace": "q", "stream": name, "query": query, "id_columns": ids, "poll": "200ms"}
	if cursor != nil {
		res["cursor"] = cursor
	}
	raw, _ := json.Marshal(res)
	var key []string
	for _, id := range ids {
		key = append(key, "/"+id)
	}
	return testsupport.Binding{Namespace: "q", Stream: name, ResourceConfig: raw, Key: key}
}

func tableBinding(table string, cursor []string) testsupport.Binding {
	res := map[string]any{"namespace": "public", "stream": table, "mode": "Polling", "poll": "200ms"}
	if cursor != nil {
		res["cursor"] = cursor
	}
	raw, _ := json.Marshal(res)
	return testsupport.Binding{Namespace: "public", Stream: table, ResourceConfig: raw, Key: []string{"/id"}}
}

// polledDocs returns the documents of one binding.
func polledDocs(s *testsupport.Session, binding int) []json.RawMessage {
	var out []json.RawMessage
	for _, c := range s.Docs() {
		if c.Binding == binding {
			out = append(out, c.Doc)
		}
	}
	return out
}

func joined(docs []json.RawMessage) string {
	var b strings.Builder
	for _, d := range docs {
		b.Write(d)
	}
	return b.String()
}

// pollMeta is _meta of a polled document.
type pollMeta struct {
	Meta struct {
		Op     string `json:"op"`
		Source struct {
			Schema string `json:"schema"`
			Table  string `json:"table"`
			Poll   int64  `json:"poll"`
			TsMs   int64  `json:"ts_ms"`
		} `json:"source"`
	} `json:"_meta"`
}

func metaOf(t *testing.T, raw json.RawMessage) pollMeta {
	t.Helper()
	var m pollMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return m
}

// waitMatches waits until the binding's documents, reduced by key, equal
// the rows of query (see diffAgainstTable).
func (f *pollingFixture) waitMatches(t *testing.T, s *testsupport.Session, binding int, key []string, what, query string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		d := diffAgainstTable(t, f.fixture, polledDocs(s, binding), key, query)
		if d.ok() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the collection does not match the source: %s\nstderr:\n%s", what, d, s.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPollingDiscover: without logical replication, discovery offers the
// keyed tables as polled bindings instead of failing.
func TestPollingDiscover(t *testing.T) {
	f := newPollingFixture(t)
	f.exec(t, "CREATE TABLE public.orders (id int PRIMARY KEY, total numeric NOT NULL, note text)")
	f.exec(t, "CREATE TABLE public.log (line text)")
	resp, stderr, err := f.connector.Call(t, discoverRequest(f.config()))
	if err != nil {
		t.Fatalf("discover: %v\n%s", err, stderr)
	}
	var body struct {
		Bindings []discovered `json:"bindings"`
	}
	if err := json.Unmarshal(resp["discovered"], &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Bindings) != 1 {
		t.Fatalf("discovered %d bindings, want orders only (log has no key): %s", len(body.Bindings), resp["discovered"])
	}
	b := body.Bindings[0]
	var res map[string]any
	if err := json.Unmarshal(b.ResourceConfig, &res); err != nil {
		t.Fatal(err)
	}
	if res["mode"] != "Polling" || res["stream"] != "orders" || !slices.Equal(b.Key, []string{"/id"}) {
		t.Errorf("discovered %s with key %v, want orders in mode Polling keyed by /id", b.ResourceConfig, b.Key)
	}
	for _, want := range []string{`"poll"`, `"total"`, `non-nullable numeric`} {
		if !strings.Contains(string(b.DocumentSchema), want) {
			t.Errorf("the schema lacks %s: %s", want, b.DocumentSchema)
		}
	}
	if !strings.Contains(stderr, `lacks the REPLICATION attribute`) && !strings.Contains(stderr, `wal_level is \"replica\"`) {
		t.Errorf("discovery does not log why it offers polled bindings:\n%s", stderr)
	}
}

// TestPollingFullRefresh polls a join with a filter: every poll reads the
// whole result, and rows that leave it (deleted, or filtered out) are
// reported as deletions. A restart polls everything again.
func TestPollingFullRefresh(t *testing.T) {
	f := newPollingFixture(t)
	f.exec(t, "CREATE TABLE public.customers (id int PRIMARY KEY, name text NOT NULL)")
	f.exec(t, "CREATE TABLE public.orders (id int PRIMARY KEY, customer int NOT NULL REFERENCES customers, total numeric NOT NULL)")
	f.exec(t, "INSERT INTO customers VALUES (1, 'ada'), (2, 'bob')")
	f.exec(t, "INSERT INTO orders SELECT g, 1 + g % 2, g * 10 FROM generate_series(1, 20) g")
	query := "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer WHERE o.total > 50;"
	want := `SELECT json_build_array(o.id)::text, json_build_object('id', o.id, 'total', o.total::text, 'name', c.name)::text
		FROM orders o JOIN customers c ON c.id = o.customer WHERE o.total > 50`
	bindings := []testsupport.Binding{queryBinding("big_orders", query, []string{"id"}, nil)}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	f.waitMatches(t, s, 0, []string{"/id"}, "the first poll", want)
	first := polledDocs(s, 0)
	for _, raw := range first {
		if m := metaOf(t, raw); m.Meta.Op != "c" || m.Meta.Source.Poll != 1 || m.Meta.Source.Schema != "q" || m.Meta.Source.Table != "big_orders" || m.Meta.Source.TsMs == 0 {
			t.Fatalf("first poll's document has _meta %+v, want op c of poll 1 of q.big_orders", m.Meta)
		}
	}

	f.exec(t, "DELETE FROM orders WHERE id = 7")
	f.exec(t, "UPDATE orders SET total = 1 WHERE id = 8")          // leaves the filter
	f.exec(t, "UPDATE customers SET name = 'robert' WHERE id = 2") // changes joined rows
	f.exec(t, "INSERT INTO orders VALUES (21, 1, 210)")
	f.waitMatches(t, s, 0, []string{"/id"}, "after a delete, an update out of the filter and a join change", want)
	var deleted []string
	for _, raw := range polledDocs(s, 0)[len(first):] {
		m := metaOf(t, raw)
		if m.Meta.Op == "d" {
			deleted = append(deleted, string(raw))
			if m.Meta.Source.Poll < 2 {
				t.Errorf("a deletion of poll %d: %s", m.Meta.Source.Poll, raw)
			}
		}
	}
	if len(deleted) != 2 {
		t.Errorf("%d deletions, want 2 (ids 7 and 8): %q", len(deleted), deleted)
	}
	if err := s.Stop(t); err != nil {
		t.Fatalf("stopping: %v\n%s", err, s.Stderr())
	}

	// After a restart the first poll reads everything again; its documents
	// are the rows as they are, without deletions.
	f.exec(t, "DELETE FROM orders WHERE id = 9")
	s2 := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, s.AckedState()), testsupport.SessionOptions{AutoAck: true})
	f.waitMatches(t, s2, 0, []string{"/id"}, "the first poll after a restart",
		`SELECT json_build_array(o.id)::text, json_build_object('id', o.id, 'total', o.total::text, 'name', c.name)::text
		FROM orders o JOIN customers c ON c.id = o.customer WHERE o.total > 50`)
	for _, raw := range polledDocs(s2, 0) {
		if m := metaOf(t, raw); m.Meta.Source.Poll <= 2 {
			t.Fatalf("after a restart, poll numbers continue; got poll %d", m.Meta.Source.Poll)
		}
	}
}

// TestPollingCursor polls a table and a query by cursor while rows are
// written concurrently, including a long transaction that takes its cursor
// values early and commits after later rows were polled: nothing is lost.
// A restart resumes from the checkpointed cursor.
func TestPollingCursor(t *testing.T) {
	f := newPollingFixture(t)
	f.exec(t, "CREATE TABLE public.events (id bigserial PRIMARY KEY, v text NOT NULL)")
	f.exec(t, "INSERT INTO events (v) SELECT 'seed ' || g FROM generate_series(1, 100) g")
	bindings := []testsupport.Binding{
		tableBinding("events", []string{"id"}),
		queryBinding("events_q", "SELECT e.xmin, e.id, e.v FROM events e", []string{"id"}, []string{"id"}),
	}
	all := `SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM events`
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	f.waitMatches(t, s, 0, []string{"/id"}, "the table's first poll", all)
	f.waitMatches(t, s, 1, []string{"/id"}, "the query's first poll", all)

	// The long transaction draws its ids now, one of them in a savepoint
	// (a subtransaction's xid is not in the snapshot's list).
	ctx := context.Background()
	long := f.pg.Connect(t, f.db)
	for _, sql := range []string{"BEGIN", "INSERT INTO events (v) VALUES ('late')", "SAVEPOINT s", "INSERT INTO events (v) VALUES ('late, in a savepoint')", "RELEASE s"} {
		if _, err := long.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Concurrent writers commit greater ids, which polls read.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			conn := f.pg.Connect(t, f.db)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := conn.Exec(ctx, "INSERT INTO events (v) VALUES ($1)", fmt.Sprintf("writer %d row %d", w, i)); err != nil {
					t.Error(err)
					return
				}
				if _, err := conn.Exec(ctx, "UPDATE events SET v = v || '+' WHERE id = $1", 1+i%100); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var maxID int64
	if err := f.conn.QueryRow(ctx, "SELECT max(id) FROM events").Scan(&maxID); err != nil {
		t.Fatal(err)
	}
	// Two polls of both bindings read beyond the late ids.
	s.WaitFor(t, 30*time.Second, "polls past the long transaction's ids", func(s *testsupport.Session) bool {
		seen := 0
		for _, b := range []int{0, 1} {
			for _, raw := range polledDocs(s, b) {
				var d struct{ ID int64 }
				if err := json.Unmarshal(raw, &d); err != nil {
					t.Fatal(err)
				}
				if d.ID > maxID {
					seen++
					break
				}
			}
		}
		return seen == 2
	})
	if _, err := long.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	// The writers go on past the late commit, so that polls overlap both.
	var atCommit int64
	if err := f.conn.QueryRow(ctx, "SELECT max(id) FROM events").Scan(&atCommit); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "more writes after the late commit", func() bool {
		var now int64
		return f.conn.QueryRow(ctx, "SELECT max(id) FROM events").Scan(&now) == nil && now > atCommit+50
	})
	close(stop)
	wg.Wait()
	f.waitMatches(t, s, 0, []string{"/id"}, "the table, after the late commit", all)
	f.waitMatches(t, s, 1, []string{"/id"}, "the query, after the late commit", all)
	for _, b := range []int{0, 1} {
		late := 0
		for _, raw := range polledDocs(s, b) {
			if strings.Contains(string(raw), `"late`) {
				late++
			}
		}
		if late < 2 {
			t.Errorf("binding %d captured %d of the 2 late rows", b, late)
		}
	}
	if err := s.Stop(t); err != nil {
		t.Fatalf("stopping: %v\n%s", err, s.Stderr())
	}

	// A restart resumes from the checkpointed cursor: the next poll reads
	// only what changed since.
	state := s.AckedState()
	f.exec(t, "INSERT INTO events (v) VALUES ('after the restart')")
	s2 := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, state), testsupport.SessionOptions{AutoAck: true})
	s2.WaitFor(t, 30*time.Second, "the row inserted while stopped", func(s *testsupport.Session) bool {
		return strings.Contains(joined(polledDocs(s, 0)), "after the restart") && strings.Contains(joined(polledDocs(s, 1)), "after the restart")
	})
	if n := len(polledDocs(s2, 0)); n > 10 {
		t.Errorf("after a restart, the table's polls emitted %d documents, want only the rows changed since the checkpoint", n)
	}
	docs := append(polledDocs(s, 0), polledDocs(s2, 0)...)
	if d := diffAgainstTable(t, f.fixture, docs, []string{"/id"}, all); !d.ok() {
		t.Errorf("across the restart: %s", d)
	}
}

// TestPollingBadInput: each mistake fails validation with an error naming
// the binding and the field.
func TestPollingBadInput(t *testing.T) {
	f := newPollingFixture(t)
	f.exec(t, "CREATE TABLE public.docs (id int PRIMARY KEY, body json, at timestamptz)")
	bin := newConnectorBin(t)
	validate := func(resources ...map[string]any) any {
		var bindings []any
		for _, r := range resources {
			bindings = append(bindings, map[string]any{"resourceConfig": r, "collection": map[string]any{"name": "acmeCo/test/x", "key": []string{"/id"}}})
		}
		return map[string]any{"validate": map[string]any{"name": "acmeCo/test/source-postgres", "connectorType": "IMAGE", "config": f.config(), "bindings": bindings}}
	}
	q := func(query string, extra ...any) map[string]any {
		r := map[string]any{"namespace": "q", "stream": "s", "query": query, "id_columns": []string{"id"}}
		for i := 0; i < len(extra); i += 2 {
			r[extra[i].(string)] = extra[i+1]
		}
		return r
	}
	for _, tc := range []struct {
		name     string
		resource map[string]any
		want     []string
	}{
		{"query fails", q("SELECT id FROM nowhere"), []string{`binding 0 (q.s): "query" fails`, `relation "nowhere" does not exist`}},
		{"syntax", q("SELEC id FROM docs"), []string{`binding 0 (q.s): "query" fails`, `syntax error`}},
		{"id column missing", q("SELECT body FROM docs"), []string{`binding 0 (q.s): "id_columns": id column(s) "id" are not columns of the result, which has "body"`}},
		{"cursor missing", q("SELECT xmin, id FROM docs", "cursor", []string{"at"}), []string{`binding 0 (q.s): "cursor": column(s) "at" are not columns of the result`}},
		{"cursor not orderable", q("SELECT xmin, id, body FROM docs", "cursor", []string{"body"}), []string{`binding 0 (q.s): "cursor" cannot order the rows by the cursor column(s) "body" (json)`, `could not identify an ordering operator for type json`}},
		{"cursor without xmin", q("SELECT id, at FROM docs", "cursor", []string{"at"}), []string{`binding 0 (q.s): "cursor" needs the query to also select the xmin`}},
		{"not a SELECT", q("DELETE FROM docs RETURNING id"), []string{`binding 0 (q.s): "query" cannot be read from as a subquery (it must be a SELECT)`}},
		{"poll interval", q("SELECT id FROM docs", "poll", "soon"), []string{`"poll" "soon" is not a duration`}},
		{"keyless query", map[string]any{"namespace": "q", "stream": "s", "query": "SELECT id FROM docs"}, []string{`"id_columns" is required with a "query"`}},
		{"missing table", map[string]any{"namespace": "public", "stream": "nope", "mode": "Polling"}, []string{`binding 0 (public.nope): table "public"."nope"`, `to poll a view, give a "query"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectFailure(t, "validate", bin.request(t, validate(tc.resource)), tc.want...)
		})
	}
	t.Run("mixed", func(t *testing.T) {
		expectFailure(t, "validate", bin.request(t, validate(q("SELECT id FROM docs"), map[string]any{"namespace": "public", "stream": "docs"})),
			`binding 0 (q.s) are polled but the capture's other bindings are replicated`)
	})
	t.Run("valid", func(t *testing.T) {
		r := bin.request(t, validate(q("SELECT xmin, id, at FROM docs WHERE at IS NOT NULL -- recent ones", "cursor", []string{"at"}), map[string]any{"namespace": "public", "stream": "docs", "mode": "Polling"}))
		if r.err != nil {
			t.Fatalf("validate: %v\n%s", r.err, r.stderr)
		}
	})
}

// TestPollingCaptureCommand captures polled tables with the capture
// command: discovery offers them when the server has no logical
// replication, and a second run resumes from the state file without
// polling again before the poll interval has passed.
func TestPollingCaptureCommand(t *testing.T) {
	f := newPollingFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, 10) g")
	dir := t.TempDir()
	configPath, statePath := filepath.Join(dir, "config.json"), filepath.Join(dir, "state.json")
	writeJSONFile(t, configPath, f.config())
	bin := newConnectorBin(t)
	args := []string{"--config", configPath, "--state", statePath}

	p := startCapture(t, bin, args...)
	p.waitDocs(t, 10)
	waitUntil(t, 30*time.Second, "the poll to be checkpointed", func() bool {
		return strings.Contains(readStateFile(t, statePath).state.Cursor, `"seq":1`)
	})
	p.stop(t)
	for _, raw := range p.docs() {
		if m := metaOf(t, raw); m.Meta.Op != "c" || m.Meta.Source.Poll != 1 || m.Meta.Source.Table != "t" {
			t.Errorf("the first run emitted %s, want the rows of poll 1", raw)
		}
	}

	// The next poll is due five minutes (the default interval) after the
	// first began: a second run resumes and waits for it.
	before := readStateFile(t, statePath).state.Cursor
	var pos struct {
		Polls map[string]struct {
			StartMillis int64 `json:"ts_ms"`
		} `json:"polls"`
	}
	if err := json.Unmarshal([]byte(before), &pos); err != nil || len(pos.Polls) != 1 {
		t.Fatalf("the state's cursor %s does not hold one binding's poll position (%v)", before, err)
	}
	var firstPoll time.Time
	for _, p := range pos.Polls {
		firstPoll = time.UnixMilli(p.StartMillis).UTC()
	}
	p = startCapture(t, newConnectorBin(t, "LOG_LEVEL=debug"), args...)
	waitUntil(t, 30*time.Second, "the second run to wait for the next poll", func() bool {
		return strings.Contains(p.stderr.String(), "waiting for the next poll")
	})
	p.stop(t)
	if want := firstPoll.Add(5 * time.Minute).Format(time.RFC3339Nano); !strings.Contains(p.stderr.String(), want) {
		t.Errorf("the second run does not wait for the poll due at %s:\n%s", want, p.stderr.String())
	}
	if docs := p.docs(); len(docs) > 0 {
		t.Errorf("the second run polled again before the poll interval passed: %d documents", len(docs))
	}
	if after := readStateFile(t, statePath).state.Cursor; after != before {
		t.Errorf("the second run changed the poll positions from %s to %s", before, after)
	}
}

// TestPollingTLS polls a server that accepts only TLS connections.
func TestPollingTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "pgcapture test CA")
	cert, key := ca.issue(t, "127.0.0.1")
	pg := testsupport.StartPostgres(t, testsupport.Options{
		Settings: map[string]string{"wal_level": "replica", "ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"},
		Files:    map[string][]byte{"server.crt": cert, "server.key": key},
		HBA:      []string{"hostnossl all all 0.0.0.0/0 reject"},
	})
	f := newFixtureOn(t, pg)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t VALUES (1, 'one'), (2, 'two')")
	cfg := f.config()
	adv := cfg["advanced"].(map[string]any)
	adv["sslmode"], adv["ssl_ca"] = "verify-full", ca.pem
	s := f.connector.Open(t, testsupport.OpenRequest(cfg, []testsupport.Binding{tableBinding("t", nil)}, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the first poll", func(s *testsupport.Session) bool { return len(s.Docs()) == 2 })
	var encrypted bool
	err := f.conn.QueryRow(context.Background(), `SELECT bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
		WHERE a.application_name = 'source-postgres' AND a.datname = $1`, f.db).Scan(&encrypted)
	if err != nil || !encrypted {
		t.Errorf("the poller's connection is not over TLS (%v)", err)
	}
}

// TestPollingSchemaChange: a column added to a polled table is reported as
// a new schema, and the next poll's documents carry it.
func TestPollingSchemaChange(t *testing.T) {
	f := newPollingFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t VALUES (1, 'one')")
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), []testsupport.Binding{tableBinding("t", nil)}, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the first poll", func(s *testsupport.Session) bool { return len(s.Docs()) >= 1 })
	f.exec(t, "ALTER TABLE public.t ADD COLUMN extra text NOT NULL DEFAULT 'added'")
	s.WaitFor(t, 30*time.Second, "a document with the new column", func(s *testsupport.Session) bool {
		return strings.Contains(joined(polledDocs(s, 0)), `"extra":"added"`)
	})
	schemas := s.SourcedSchemas()
	if last := schemas[len(schemas)-1]; len(schemas) < 2 || !strings.Contains(string(last.Schema), `"extra"`) || !strings.Contains(string(last.Schema), "non-nullable text") {
		t.Errorf("after the column was added, the last of %d schemas is %s; want one with the non-nullable column extra", len(schemas), last.Schema)
	}
}

// TestPollingSSHTunnel polls a query through an SSH tunnel, as a capture
// of a database behind a bastion host does.
func TestPollingSSHTunnel(t *testing.T) {
	f := newPollingFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, 5) g")
	private, public := testsupport.GenerateKey(t, "ed25519-openssh")
	sshd := testsupport.StartSSHD(t, public)
	cfg := tunnelConfig(f.fixture, sshd, private, "")
	cfg["user"], cfg["password"] = "poller", "poller"
	bindings := []testsupport.Binding{queryBinding("t", "SELECT id, v FROM t WHERE id > 2", []string{"id"}, nil)}
	s := f.connector.Open(t, testsupport.OpenRequest(cfg, bindings, nil), testsupport.SessionOptions{AutoAck: true})
	f.waitMatches(t, s, 0, []string{"/id"}, "the poll through the tunnel",
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM t WHERE id > 2`)
	if !strings.Contains(s.Stderr(), "hostKeyFingerprint") {
		t.Errorf("the capture did not go through the tunnel:\n%s", s.Stderr())
	}
}
