package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// TestKeyChangingUpdates checks that an update of a primary key becomes a
// delete of the old key followed by a creation of the new one, under the
// default replica identity and under FULL, so that the reduced collection
// keeps no ghost under the old key; under FULL the new key's document
// carries the row's unchanged TOASTed value, taken from the old row.
func TestKeyChangingUpdates(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.kc_default (id int PRIMARY KEY, v text)`)
	f.exec(t, `INSERT INTO public.kc_default SELECT g, 'v' || g FROM generate_series(1, 5) g`)
	f.exec(t, `CREATE TABLE public.kc_full (id int PRIMARY KEY, v text, big text)`)
	f.exec(t, `ALTER TABLE public.kc_full REPLICA IDENTITY FULL`)
	// md5 hex strings compress poorly enough to be stored out of line.
	f.exec(t, `INSERT INTO public.kc_full SELECT g, 'v' || g, (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 300) i)
		FROM generate_series(1, 5) g`)
	bindings := []testsupport.Binding{
		{Namespace: "public", Stream: "kc_default", Key: []string{"/id"}},
		{Namespace: "public", Stream: "kc_full", Key: []string{"/id"}},
	}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "both tables backfilled", func(s *testsupport.Session) bool {
		return !backfilling(t, s.State(), bindings)
	})

	for _, table := range []string{"kc_default", "kc_full"} {
		f.exec(t, `UPDATE public.`+table+` SET id = 10 WHERE id = 1`)
		f.exec(t, `UPDATE public.`+table+` SET id = 20, v = 'moved' WHERE id = 2`)
		// One statement moving two keys.
		f.exec(t, `UPDATE public.`+table+` SET id = id + 100 WHERE id IN (3, 4)`)
	}
	s.WaitFor(t, 30*time.Second, "the last key change", func(s *testsupport.Session) bool {
		for binding := range bindings {
			docs := docsOf(s, binding)
			if len(docs) == 0 || parseDoc(t, docs[len(docs)-1]).Fields["id"] != float64(104) {
				return false
			}
		}
		return true
	})

	for binding, table := range []string{"kc_default", "kc_full"} {
		docs := docsOf(s, binding)
		query := `SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM public.` + table
		if table == "kc_full" {
			query = `SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v, 'big', big)::text FROM public.kc_full`
		}
		if d := diffAgainstTable(t, f, docs, []string{"/id"}, query); !d.ok() {
			t.Errorf("%s: the reduced documents differ from the table: %s", table, d)
		}

		changes := docs[5:]
		wantOps := []struct {
			op string
			id float64
		}{{"d", 1}, {"c", 10}, {"d", 2}, {"c", 20}, {"d", 3}, {"c", 103}, {"d", 4}, {"c", 104}}
		if len(changes) != len(wantOps) {
			t.Errorf("%s: %d change documents, want %d (a delete and a creation per moved key)", table, len(changes), len(wantOps))
			continue
		}
		for i, w := range wantOps {
			d := parseDoc(t, changes[i])
			if d.Meta.Op != w.op || d.Fields["id"] != w.id {
				t.Errorf("%s: change %d is %s of id %v, want %s of id %v: %s", table, i, d.Meta.Op, d.Fields["id"], w.op, w.id, changes[i])
			}
		}
		if a, b := parseDoc(t, changes[0]), parseDoc(t, changes[1]); a.Meta.Source.TxID != b.Meta.Source.TxID || slices.Compare(b.Meta.Source.Loc, a.Meta.Source.Loc) < 0 {
			t.Errorf("%s: the delete and the creation of a key change should share the transaction, in order: %s then %s", table, changes[0], changes[1])
		}
		if table == "kc_full" {
			moved := parseDoc(t, changes[1])
			if big, _ := moved.Fields["big"].(string); len(big) != 300*32 {
				t.Errorf("kc_full: the new key's document should carry the unchanged TOASTed value from the old row; got big of %d characters: %.200s", len(big), changes[1])
			}
		}
	}
}

// TestTruncateIsReported checks that a TRUNCATE of a captured table is
// logged as a warning naming the table, and that the capture goes on.
func TestTruncateIsReported(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.trunc (id int PRIMARY KEY, v text)`)
	f.exec(t, `CREATE TABLE public.other (id int PRIMARY KEY)`)
	f.exec(t, `INSERT INTO public.trunc SELECT g, 'x' FROM generate_series(1, 3) g`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "trunc", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the table backfilled", func(s *testsupport.Session) bool {
		return !backfilling(t, s.State(), bindings)
	})

	f.exec(t, `TRUNCATE public.other`)
	f.exec(t, `TRUNCATE public.trunc`)
	f.exec(t, `INSERT INTO public.trunc VALUES (100, 'after the truncate')`)
	s.WaitFor(t, 30*time.Second, "the insert after the truncate", func(s *testsupport.Session) bool {
		return len(docsOf(s, 0)) == 4
	})
	var warnings []string
	for _, line := range strings.Split(s.Stderr(), "\n") {
		if strings.Contains(line, "TRUNCATE") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "level=warning") || !strings.Contains(warnings[0], "public.trunc") {
		t.Errorf("want one warning naming public.trunc (and none for the uncaptured public.other); got %q", warnings)
	}
	if d := parseDoc(t, docsOf(s, 0)[3]); d.Meta.Op != "c" || d.Fields["id"] != float64(100) {
		t.Errorf("the capture did not go on after the truncate: %s", docsOf(s, 0)[3])
	}
}
