package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestBinaryStreamFallsBackToText streams a table in binary (PostgreSQL
// 14+, the default), then adds a column of a type that is received in text
// only: the stream restarts in text at its last commit, and the documents
// go on, none lost and none repeated. With replication_format text the
// stream never asks for binary.
func TestBinaryStreamFallsBackToText(t *testing.T) {
	f := newFixture(t)
	if f.server(t).Major() < 14 {
		t.Skip("binary replication needs PostgreSQL 14")
	}
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, ts timestamptz, amount numeric(12,2), doc jsonb)`)
	f.exec(t, `INSERT INTO public.t VALUES (1, '2024-01-15 14:30:00.5+05:30', 1.5, '{"a": 1}')`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "t"}, 0)) == "Active"
	})
	f.exec(t, `INSERT INTO public.t VALUES (2, '-infinity', 'NaN', '[1, 2.50]')`)
	s.WaitFor(t, 30*time.Second, "the binary row", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) == 2 })
	if !strings.Contains(s.Stderr(), "streaming values in binary") {
		t.Fatalf("the capture did not stream in binary:\n%s", s.Stderr())
	}

	f.exec(t, `BEGIN; INSERT INTO public.t VALUES (3, NULL, 3, NULL); ALTER TABLE public.t ADD COLUMN tags int[];
		INSERT INTO public.t VALUES (4, '2024-02-29 00:00:00+00', 4, 'null', '{1,NULL}'); COMMIT`)
	f.exec(t, `INSERT INTO public.t VALUES (5, '0044-03-15 12:00:00+00 BC', -0.5, '"s"', '{}')`)
	s.WaitFor(t, 60*time.Second, "the rows after the new column", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 5 })
	docs := docsOf(s, 0)
	want := []string{
		`{"amount":"1.50","doc":{"a":1},"id":1,"ts":"2024-01-15T09:00:00.5Z"}`,
		`{"amount":"NaN","doc":[1,2.5],"id":2,"ts":"0001-01-01T00:00:00Z"}`,
		`{"amount":"3.00","doc":null,"id":3,"ts":null}`,
		`{"amount":"4.00","doc":null,"id":4,"tags":[1,null],"ts":"2024-02-29T00:00:00Z"}`,
		`{"amount":"-0.50","doc":"s","id":5,"tags":[],"ts":"0001-01-01T00:00:00Z"}`,
	}
	if len(docs) != len(want) {
		t.Fatalf("%d documents, want %d", len(docs), len(want))
	}
	for i, raw := range docs {
		got, err := json.Marshal(parseDoc(t, raw).Fields)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want[i] {
			t.Errorf("document %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
	logs := s.Stderr()
	for _, msg := range []string{"restarting the stream in text mode", "streaming values in text from now on"} {
		if !strings.Contains(logs, msg) {
			t.Errorf("the logs do not say %q:\n%s", msg, logs)
		}
	}
}

func TestTextReplicationFormat(t *testing.T) {
	f := newFixture(t)
	f.advanced = map[string]any{"replication_format": "text"}
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, ts timestamptz)`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "t"}, 0)) == "Active"
	})
	f.exec(t, `INSERT INTO public.t VALUES (1, '2024-01-15 14:30:00+00')`)
	s.WaitFor(t, 30*time.Second, "the row", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) == 1 })
	if strings.Contains(s.Stderr(), "streaming values in binary") {
		t.Errorf("replication_format text streamed in binary:\n%s", s.Stderr())
	}
}
