package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestSchemaChangesWhileStreaming alters a captured table while the capture
// streams: changes after each ALTER must be decoded with the new columns at
// once (no restart), and the table's new schema reported.
func TestSchemaChangesWhileStreaming(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, a text, b int)`)
	f.exec(t, `INSERT INTO public.t VALUES (1, 'one', 1)`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "t"}, 0)) == "Active"
	})
	initialSchemas := len(s.SourcedSchemas())
	if initialSchemas == 0 {
		t.Error("no sourcedSchema was reported at start")
	}

	f.exec(t, `ALTER TABLE public.t ADD COLUMN tags text[], ADD COLUMN due date`)
	f.exec(t, `INSERT INTO public.t VALUES (2, 'two', 2, '{x,"y z"}', '2024-02-29')`)
	f.exec(t, `ALTER TABLE public.t DROP COLUMN a`)
	f.exec(t, `ALTER TABLE public.t ALTER COLUMN b TYPE numeric(10,2)`)
	f.exec(t, `UPDATE public.t SET b = 2.5 WHERE id = 2`)
	s.WaitFor(t, 30*time.Second, "the changes after the ALTERs", func(s *testsupport.Session) bool {
		return len(docsOf(s, 0)) == 3
	})
	docs := docsOf(s, 0)
	insert, update := parseDoc(t, docs[1]), parseDoc(t, docs[2])
	if tags, _ := json.Marshal(insert.Fields["tags"]); string(tags) != `["x","y z"]` || insert.Fields["due"] != "2024-02-29" {
		t.Errorf("the added columns were not decoded as an array and a date: %s", docs[1])
	}
	if _, ok := update.Fields["a"]; ok || update.Fields["b"] != "2.50" {
		t.Errorf("after dropping a and retyping b as numeric, want no a and b as \"2.50\": %s", docs[2])
	}
	schemas := s.SourcedSchemas()
	if len(schemas) <= initialSchemas {
		t.Fatalf("no sourcedSchema was reported after the ALTERs")
	}
	last := string(schemas[len(schemas)-1].Schema)
	if !strings.Contains(last, `"tags"`) || !strings.Contains(last, `"due"`) || strings.Contains(last, `"a":`) {
		t.Errorf("the last reported schema does not describe the altered table: %s", last)
	}
	v, err := testsupport.NewSchemaValidator(schemas[len(schemas)-1].Schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(docs[2]); err != nil {
		t.Error(err)
	}
	// No reduction against the table here: DDL itself changes no rows, so
	// rows untouched since keep their old fields in the collection (README,
	// "Schema changes").
}
