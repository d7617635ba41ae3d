package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestWideningNeverStalesTheSchema widens what a table's columns accept
// without rewriting it (a new enum label, a domain's CHECK replaced by a
// wider one, a longer varchar) while the table is backfilled and again
// while it streams. Every document must be valid against the schema in
// force when it was emitted: the discovered one, or the last sourcedSchema
// before it.
func TestWideningNeverStalesTheSchema(t *testing.T) {
	f := newFixture(t)
	f.advanced["backfill_chunk_size"] = 10
	f.exec(t, `CREATE TYPE mood AS ENUM ('sad', 'ok');
		CREATE DOMAIN small_pos AS int CONSTRAINT small CHECK (VALUE > 0 AND VALUE < 10);
		CREATE DOMAIN code AS varchar(3);
		CREATE TABLE public.t (id int PRIMARY KEY, m mood, d small_pos, c code, v varchar(5), vb varbit(4), ch char(2));
		INSERT INTO public.t SELECT g, 'ok', 5, 'abc', 'vvvvv', B'1010', 'xy' FROM generate_series(1, 3000) g`)
	discovered := f.discover(t)["public/t"]
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	stateKey := protocol.StateKey([]string{"public", "t"}, 0)

	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the first backfill chunk", func(s *testsupport.Session) bool {
		return len(docsOf(s, 0)) >= 10
	})

	// Mid-backfill. The lock, taken first, holds the backfill back until
	// every change is committed, so the rows not yet backfilled are read
	// with the widened values (300 chunks leave it time to take it). No
	// ALTER TABLE here: it would send a Relation message, after which the
	// schema is reported again, and that is not what is tested.
	lock := f.pg.Connect(t, f.db)
	ctx := context.Background()
	for _, sql := range []string{`BEGIN`, `LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE`} {
		if _, err := lock.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	f.exec(t, `ALTER TYPE mood ADD VALUE 'purple'`)
	for _, sql := range []string{
		`ALTER DOMAIN small_pos DROP CONSTRAINT small`,
		`ALTER DOMAIN small_pos ADD CONSTRAINT small CHECK (VALUE > 0 AND VALUE < 1000)`,
		`UPDATE public.t SET m = 'purple', d = 500 WHERE id > 2950 OR id = 1`,
	} {
		if _, err := lock.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if mode := streamMode(t, s.State(), stateKey); mode != "Backfill" {
		t.Fatalf("the table is %q before the widening commits; the test needs it backfilling", mode)
	}
	if _, err := lock.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	s.WaitFor(t, 60*time.Second, "the backfill", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), stateKey) == "Active"
	})

	// Mid-stream.
	f.exec(t, `ALTER TYPE mood ADD VALUE 'green' BEFORE 'sad'`)
	f.exec(t, `UPDATE public.t SET m = 'green' WHERE id = 2`)
	f.exec(t, `ALTER DOMAIN small_pos DROP CONSTRAINT small;
		ALTER DOMAIN small_pos ADD CONSTRAINT small CHECK (VALUE > 0)`)
	f.exec(t, `UPDATE public.t SET d = 123456 WHERE id = 3`)
	f.exec(t, `ALTER TABLE public.t ALTER COLUMN v TYPE varchar(200)`) // no rewrite
	f.exec(t, `ALTER DOMAIN code DROP NOT NULL`)                       // a no-op change of a domain
	f.exec(t, `ALTER TABLE public.t ALTER COLUMN vb TYPE varbit(16)`)
	f.exec(t, `UPDATE public.t SET v = repeat('z', 150), vb = B'1010101010101', c = 'xyz' WHERE id = 4`)
	s.WaitFor(t, 30*time.Second, "the streamed changes", func(s *testsupport.Session) bool {
		for _, raw := range docsOf(s, 0) {
			if strings.Contains(string(raw), strings.Repeat("z", 150)) {
				return true
			}
		}
		return false
	})

	validators := map[string]*jsonschema.Schema{}
	var backfilledPurple, streamedGreen, streamedWide bool
	for _, c := range s.Docs() {
		schema := s.SchemaInForce(c, discovered.DocumentSchema)
		v := validators[string(schema)]
		if v == nil {
			v = strictValidator(t, schema)
			validators[string(schema)] = v
		}
		validateDocs(t, v, []json.RawMessage{c.Doc})
		d := parseDoc(t, c.Doc)
		switch {
		case d.Meta.Source.Snapshot && d.Fields["m"] == "purple" && d.Fields["d"] == float64(500):
			backfilledPurple = true
		case !d.Meta.Source.Snapshot && d.Fields["m"] == "green":
			streamedGreen = true
		case !d.Meta.Source.Snapshot && d.Fields["d"] == float64(123456):
			streamedWide = true
		}
	}
	if !backfilledPurple || !streamedGreen || !streamedWide {
		t.Errorf("widened values: backfilled purple/500 %t, streamed green %t, streamed 123456 %t; want all", backfilledPurple, streamedGreen, streamedWide)
	}
	if len(validators) < 2 {
		t.Errorf("documents were checked against %d schemas; the ALTER TABLEs should have brought new ones", len(validators))
	}
	reduceAgainstTable(t, f, docsOf(s, 0), []string{"/id"},
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'm', m, 'd', d, 'c', c, 'v', v, 'vb', vb::text, 'ch', ch)::text FROM public.t`)
}
