package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"pgcapture/testsupport"
)

// Helpers shared by the tests of crashes, acknowledgements and slot faults.

// tableDiff compares a collection, reduced by key, with its table.
type tableDiff struct {
	rows                  int // in the table
	missing, extra, stale int
	examples              []string
}

func (d tableDiff) String() string {
	s := fmt.Sprintf("%d rows: %d missing, %d extra (ghosts), %d stale", d.rows, d.missing, d.extra, d.stale)
	if len(d.examples) > 0 {
		s += "\n  " + strings.Join(d.examples, "\n  ")
	}
	return s
}

func (d tableDiff) ok() bool { return d.missing == 0 && d.extra == 0 && d.stale == 0 }

func (d *tableDiff) note(format string, args ...any) {
	if len(d.examples) < 8 {
		d.examples = append(d.examples, fmt.Sprintf(format, args...))
	}
}

// diffAgainstTable reduces docs by key and compares them with the rows of
// query, which selects each row's key as a JSON array and the row as a JSON
// object, e.g. SELECT json_build_array(id)::text, json_build_object('id', id)::text.
// Keys and rows are compared in a canonical JSON form, so escapes do not
// matter.
func diffAgainstTable(t *testing.T, f *fixture, docs []json.RawMessage, key []string, query string, args ...any) tableDiff {
	t.Helper()
	reduced, err := testsupport.Reduce(docs, key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string, len(reduced))
	for k, raw := range reduced {
		fields := parseDoc(t, raw).Fields
		got[canonicalJSON(t, []byte(k))] = canonicalJSON(t, mustMarshal(t, fields))
	}
	rows, err := f.conn.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	want := make(map[string]string)
	for rows.Next() {
		var k, row string
		if err := rows.Scan(&k, &row); err != nil {
			t.Fatal(err)
		}
		want[canonicalJSON(t, []byte(k))] = canonicalJSON(t, []byte(row))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}

	d := tableDiff{rows: len(want)}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		switch g, ok := got[k]; {
		case !ok:
			d.missing++
			d.note("missing %s: table has %s", k, abbreviate(want[k]))
		case g != want[k]:
			d.stale++
			d.note("stale %s: collection has %s, table has %s", k, abbreviate(g), abbreviate(want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			d.extra++
			d.note("extra %s: collection has %s", k, abbreviate(got[k]))
		}
	}
	return d
}

func canonicalJSON(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return string(mustMarshal(t, v))
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func abbreviate(s string) string {
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

// committedDocs returns, per binding, the documents of the session's first
// n checkpoints: what the runtime committed once it acknowledged them.
func committedDocs(s *testsupport.Session, n int) map[int][]json.RawMessage {
	out := make(map[int][]json.RawMessage)
	for _, cp := range s.Checkpoints()[:n] {
		for _, c := range cp.Docs {
			out[c.Binding] = append(out[c.Binding], c.Doc)
		}
	}
	return out
}

// checkpointCursors returns the stream cursor after each of the session's
// checkpoints, starting from the state the session was opened with.
func checkpointCursors(t *testing.T, s *testsupport.Session, initial json.RawMessage) []pglogrepl.LSN {
	t.Helper()
	state := initial
	var out []pglogrepl.LSN
	for i, cp := range s.Checkpoints() {
		var err error
		if state, err = testsupport.MergePatch(state, cp.Updated); err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		out = append(out, cursorOf(t, state))
	}
	return out
}

// waitExit waits for a session's connector to exit by itself and returns
// its exit error (nil for status 0).
func waitExit(t *testing.T, s *testsupport.Session, timeout time.Duration) error {
	t.Helper()
	var err error
	waitUntil(t, timeout, "the connector to exit", func() bool {
		var exited bool
		exited, err = s.Exited()
		return exited
	})
	return err
}

// waitSlotInactive waits until no process uses the fixture's slot, as after
// a killed connector's walsender has noticed and exited.
func (f *fixture) waitSlotInactive(t *testing.T) {
	t.Helper()
	waitUntil(t, 30*time.Second, "the replication slot to be released", func() bool {
		var active bool
		err := f.conn.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = $1", f.slot).Scan(&active)
		return err == nil && !active
	})
}

// walLSN evaluates an expression of type pg_lsn, e.g. pg_current_wal_lsn().
func (f *fixture) walLSN(t *testing.T, expr string) pglogrepl.LSN {
	t.Helper()
	var s string
	if err := f.conn.QueryRow(context.Background(), "SELECT ("+expr+")::text").Scan(&s); err != nil {
		t.Fatalf("SELECT %s: %v", expr, err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatalf("%s = %q: %v", expr, s, err)
	}
	return lsn
}

// hasICU reports whether the server has the ICU collation en-x-icu.
func (f *fixture) hasICU(t *testing.T) bool {
	t.Helper()
	var icu bool
	if err := f.conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_collation WHERE collname = 'en-x-icu')`).Scan(&icu); err != nil {
		t.Fatal(err)
	}
	return icu
}
