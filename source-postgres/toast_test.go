package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// toastColumns returns the large columns of public.toasty: ext is stored
// EXTERNAL (out of line, uncompressed), toasted has the default storage but
// incompressible data, so it is stored out of line too, and inline is
// compressible enough to be stored compressed in the row itself.
func toastColumns() []string { return []string{"ext", "toasted", "inline"} }

// randomText is SQL for about 128 KB of random, incompressible text.
const randomText = `(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 4000))`

// TestUnchangedToastedValues updates a column next to large out-of-line
// values, which PostgreSQL's default replica identity does not resend: the
// update's document must leave them out (never null, "" or a placeholder)
// so that reducing the documents keeps them, and under REPLICA IDENTITY
// FULL it must carry them, from the old row, in the row and in before.
func TestUnchangedToastedValues(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.toasty (id int PRIMARY KEY, counter int NOT NULL, ext text, toasted text, inline text)`)
	f.exec(t, `ALTER TABLE public.toasty ALTER COLUMN ext SET STORAGE EXTERNAL`)
	insert := `INSERT INTO public.toasty VALUES ($1, 0, ` + randomText + `, ` + randomText + `, repeat('compressible ', 8000))`
	f.exec(t, insert, 1)
	f.checkToastStorage(t)

	got := f.discover(t)
	schema := strictValidator(t, got["public/toasty"].DocumentSchema)
	s := openActive(t, f, []testsupport.Binding{bindingFor(t, got, "public/toasty")}, 30*time.Second)
	f.exec(t, insert, 2)
	f.exec(t, `UPDATE public.toasty SET counter = counter + 1`)
	s.WaitFor(t, 30*time.Second, "the insert and the updates", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 4 })
	docs := docsOf(s, 0)
	for _, raw := range docs[2:] {
		fields := rawFields(t, raw)
		if d := parseDoc(t, raw); d.Meta.Op != "u" || d.Fields["counter"] != float64(1) {
			t.Fatalf("want an update setting counter to 1, got %.300s", raw)
		}
		for _, c := range []string{"ext", "toasted"} {
			if v, ok := fields[c]; ok {
				t.Errorf("the update of row %s carries the unchanged TOASTed %s as %.100s; it must be omitted", fields["id"], c, v)
			}
		}
		if v, ok := fields["inline"]; !ok || len(v) < 100_000 {
			t.Errorf("the update of row %s lacks the inline (compressed, not TOASTed) value, which PostgreSQL does send", fields["id"])
		}
	}
	validateDocs(t, schema, docs)
	f.checkToastReduction(t, docs)

	// Changing the TOASTed value itself sends it.
	f.exec(t, `UPDATE public.toasty SET ext = `+randomText+` WHERE id = 1`)
	s.WaitFor(t, 30*time.Second, "the update of ext", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 5 })
	if fields := rawFields(t, docsOf(s, 0)[4]); len(fields["ext"]) < 100_000 {
		t.Errorf("an update of ext carries ext as %.100s", fields["ext"])
	}

	// Under REPLICA IDENTITY FULL the old row supplies every value.
	f.exec(t, `ALTER TABLE public.toasty REPLICA IDENTITY FULL`)
	f.exec(t, `UPDATE public.toasty SET counter = counter + 1 WHERE id = 1`)
	s.WaitFor(t, 30*time.Second, "the update under REPLICA IDENTITY FULL", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 6 })
	docs = docsOf(s, 0)
	full := docs[5]
	d := parseDoc(t, full)
	if d.Meta.Op != "u" || d.Fields["counter"] != float64(2) || d.Meta.Before["counter"] != float64(1) {
		t.Fatalf("want an update of counter from 1 to 2 with before, got %.300s", full)
	}
	want := f.toastHashes(t, 1)
	for _, c := range toastColumns() {
		value, _ := d.Fields[c].(string)
		before, _ := d.Meta.Before[c].(string)
		if hash(value) != want[c] || hash(before) != want[c] {
			t.Errorf("under REPLICA IDENTITY FULL, %s is %d bytes (before: %d bytes), not the table's value", c, len(value), len(before))
		}
	}
	validateDocs(t, schema, docs)
	f.checkToastReduction(t, docs)
}

// checkToastStorage checks that the one row of public.toasty is stored as
// the test means: ext and toasted uncompressed, which in a one-page heap
// means out of line, and inline compressed small enough to stay in the row.
func (f *fixture) checkToastStorage(t *testing.T) {
	t.Helper()
	var ok bool
	// A value is stored compressed when its stored size is less than its
	// length (pg_column_compression, which says so directly, is new in 14).
	err := f.conn.QueryRow(context.Background(), `SELECT pg_relation_size('public.toasty') = 8192
		AND octet_length(ext) >= 100000 AND pg_column_size(ext) >= octet_length(ext)
		AND octet_length(toasted) >= 100000 AND pg_column_size(toasted) >= octet_length(toasted)
		AND octet_length(inline) >= 100000 AND pg_column_size(inline) < 1500
		FROM public.toasty`).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("public.toasty's values are not stored as the test needs: ext and toasted out of line, inline compressed in the row")
	}
}

// toastHashes returns the SHA-256, in hex, of the large values of row id as
// PostgreSQL computes them.
func (f *fixture) toastHashes(t *testing.T, id int) map[string]string {
	t.Helper()
	hashes := map[string]string{}
	for _, c := range toastColumns() {
		var h string
		query := fmt.Sprintf(`SELECT encode(sha256(convert_to(%s, 'UTF8')), 'hex') FROM public.toasty WHERE id = $1`, c)
		if err := f.conn.QueryRow(context.Background(), query, id).Scan(&h); err != nil {
			t.Fatal(err)
		}
		hashes[c] = h
	}
	return hashes
}

// checkToastReduction reduces the documents by key as the collection would
// and compares each row's large values with the table's, by hash.
func (f *fixture) checkToastReduction(t *testing.T, docs []json.RawMessage) {
	t.Helper()
	reduced, err := testsupport.Reduce(docs, []string{"/id"})
	if err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 2; id++ {
		raw, ok := reduced[fmt.Sprintf("[%d]", id)]
		if !ok {
			t.Fatalf("no reduced document for id %d among %d keys", id, len(reduced))
		}
		fields := parseDoc(t, raw).Fields
		for c, want := range f.toastHashes(t, id) {
			value, isString := fields[c].(string)
			if !isString || hash(value) != want {
				t.Errorf("row %d reduces to a %s of %T, %d bytes, which is not the table's value", id, c, fields[c], len(value))
			}
		}
	}
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
