package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestKeylessTables captures tables without any usable key: discovered with
// the document's location as key, backfilled by ranges of blocks, then
// streamed. Each row must be backfilled exactly once when nothing changes
// during the backfill.
func TestKeylessTables(t *testing.T) {
	f := newFixture(t)
	f.advanced["backfill_chunk_size"] = 100
	f.advanced["backfill_connections"] = 2
	f.exec(t, `CREATE TABLE public.logs (at timestamptz NOT NULL, line text)`)
	f.exec(t, `ALTER TABLE public.logs REPLICA IDENTITY FULL`)
	f.exec(t, `INSERT INTO public.logs SELECT '2024-01-01'::timestamptz + g * interval '1 minute', repeat('x', 200) || g FROM generate_series(1, 1000) g`)
	f.exec(t, `ANALYZE public.logs`)
	f.exec(t, `CREATE TABLE public.readings (sensor int, value float8) PARTITION BY RANGE (sensor)`)
	f.exec(t, `CREATE TABLE public.readings_low PARTITION OF public.readings FOR VALUES FROM (0) TO (100)`)
	f.exec(t, `CREATE TABLE public.readings_high PARTITION OF public.readings FOR VALUES FROM (100) TO (1000)`)
	f.exec(t, `INSERT INTO public.readings SELECT g % 200, g FROM generate_series(1, 3000) g`)

	got := f.discover(t)
	loc := []string{"/_meta/source/loc/0", "/_meta/source/loc/1", "/_meta/source/loc/2"}
	for _, name := range []string{"public/logs", "public/readings"} {
		b := got[name]
		var res map[string]string
		if err := json.Unmarshal(b.ResourceConfig, &res); err != nil {
			t.Fatalf("%s: resource config %s: %v", name, b.ResourceConfig, err)
		}
		if !slices.Equal(b.Key, loc) || !b.IsFallbackKey || res["mode"] != "Without Primary Key" {
			t.Errorf("%s: discovered key %v, fallback %v, resource %s; want the location key, a fallback, and mode Without Primary Key", name, b.Key, b.IsFallbackKey, b.ResourceConfig)
		}
	}

	bindings := []testsupport.Binding{
		{Namespace: "public", Stream: "logs", Mode: "Without Primary Key", Key: loc},
		{Namespace: "public", Stream: "readings", Mode: "Without Primary Key", Key: loc},
	}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 60*time.Second, "both keyless tables backfilled", func(s *testsupport.Session) bool {
		st := s.State()
		return streamMode(t, st, protocol.StateKey([]string{"public", "logs"}, 0)) == "Active" &&
			streamMode(t, st, protocol.StateKey([]string{"public", "readings"}, 0)) == "Active"
	})
	// Over 2 connections each table is split into block
	// ranges read at once; every row must still come exactly once.
	if n := strings.Count(s.Stderr(), "backfilling the table in ranges read at once"); n != 2 {
		t.Errorf("%d tables were split into block ranges, want both", n)
	}
	if n := len(s.Checkpoints()); n < 5 {
		t.Errorf("the 1000-row table took %d checkpoints: it should have been read in several block ranges", n)
	}
	for i, want := range []int{1000, 3000} {
		seen := map[string]int{}
		for _, raw := range docsOf(s, i) {
			d := parseDoc(t, raw)
			b, _ := json.Marshal(d.Fields)
			seen[string(b)]++
		}
		if len(seen) != want {
			t.Errorf("binding %d: backfilled %d distinct rows, want %d", i, len(seen), want)
		}
		for row, n := range seen {
			if n != 1 {
				t.Errorf("binding %d: row %s backfilled %d times", i, row, n)
			}
		}
	}

	f.exec(t, `INSERT INTO public.logs VALUES ('2030-01-01', 'new')`)
	f.exec(t, `DELETE FROM public.logs WHERE line = 'new'`)
	f.exec(t, `INSERT INTO public.readings VALUES (150, 1.5)`)
	s.WaitFor(t, 30*time.Second, "the changes of the keyless tables", func(s *testsupport.Session) bool {
		return len(docsOf(s, 0)) == 1002 && len(docsOf(s, 1)) == 3001
	})
	logs := docsOf(s, 0)
	if ins, del := parseDoc(t, logs[1000]), parseDoc(t, logs[1001]); ins.Meta.Op != "c" || del.Meta.Op != "d" || del.Fields["line"] != "new" {
		t.Errorf("want an insert and a delete carrying the whole row, got %s and %s", logs[1000], logs[1001])
	}
	if r := parseDoc(t, docsOf(s, 1)[3000]); r.Meta.Source.Table != "readings" || r.Fields["sensor"] != float64(150) {
		t.Errorf("a partition's change should arrive under the root's name: %s", docsOf(s, 1)[3000])
	}
}
