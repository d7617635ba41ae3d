package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// TestLargeValues captures a 20 MB text and a 20 MB bytea (random bytes,
// zeros included) through the backfill and through replication, and
// compares what the documents decode to with PostgreSQL's sha256 of the
// stored values: nothing may be truncated or altered.
func TestLargeValues(t *testing.T) {
	const size = 20 << 20
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.big (id int PRIMARY KEY, t text, b bytea)`)
	// Random-looking content: 64 bytes per sha512 for the bytea, their 128
	// hex digits for the text.
	f.exec(t, `INSERT INTO public.big
		SELECT 1, (SELECT string_agg(encode(sha512(int4send(g)), 'hex'), '') FROM generate_series(1, $1 / 128) g),
		          (SELECT string_agg(sha512(int4send(g)), ''::bytea) FROM generate_series(1, $1 / 64) g)`, size)

	got := f.discover(t)
	s := openActive(t, f, []testsupport.Binding{bindingFor(t, got, "public/big")}, 60*time.Second)
	f.exec(t, `INSERT INTO public.big SELECT 2, t || 'é', b || '\x00'::bytea FROM public.big WHERE id = 1`)
	s.WaitFor(t, 60*time.Second, "the replicated row", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 2 })

	for i, raw := range docsOf(s, 0) {
		var doc struct {
			Meta struct {
				Source struct {
					Snapshot bool `json:"snapshot"`
				} `json:"source"`
			} `json:"_meta"`
			ID int    `json:"id"`
			T  string `json:"t"`
			B  []byte `json:"b"` // decoded from base64
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("document %d (%d bytes): %v", i, len(raw), err)
		}
		var wantT, wantB string
		var lenT, lenB int
		err := f.conn.QueryRow(context.Background(), `SELECT encode(sha256(convert_to(t, 'UTF8')), 'hex'), octet_length(t),
			encode(sha256(b), 'hex'), octet_length(b) FROM public.big WHERE id = $1`, doc.ID).Scan(&wantT, &lenT, &wantB, &lenB)
		if err != nil {
			t.Fatal(err)
		}
		if doc.ID != i+1 || doc.Meta.Source.Snapshot != (i == 0) {
			t.Errorf("document %d is of row %d (snapshot %v), want row 1 backfilled and row 2 replicated", i, doc.ID, doc.Meta.Source.Snapshot)
		}
		if lenT < size || lenB < size {
			t.Fatalf("row %d holds %d and %d bytes, not 20 MB", doc.ID, lenT, lenB)
		}
		if got := sha256.Sum256([]byte(doc.T)); hex.EncodeToString(got[:]) != wantT {
			t.Errorf("row %d: the text is %d bytes that differ from the table's %d", doc.ID, len(doc.T), lenT)
		}
		if got := sha256.Sum256(doc.B); hex.EncodeToString(got[:]) != wantB {
			t.Errorf("row %d: the bytea is %d bytes that differ from the table's %d", doc.ID, len(doc.B), lenB)
		}
	}
}

// TestOversizedValuesTruncate captures 20 MB values with
// advanced.oversized_values = truncate, through the backfill and through
// replication: text is cut to at most 8 MiB at a character boundary, bytea
// to 8 MiB, and jsonb replaced by Estuary's truncation marker.
func TestOversizedValuesTruncate(t *testing.T) {
	const size, limit = 20 << 20, 8 << 20
	f := newFixture(t)
	f.advanced["oversized_values"] = "truncate"
	// '€' is 3 bytes, so the 8 MiB limit falls inside a character.
	f.exec(t, `CREATE TABLE public.big (id int PRIMARY KEY, t text, b bytea, j jsonb, small text)`)
	f.exec(t, `INSERT INTO public.big SELECT 1, repeat('€', $1 / 3), decode(repeat('00ff', $1 / 2), 'hex'),
		jsonb_build_object('k', repeat('a', $1)), 'small'`, size)

	got := f.discover(t)
	validator := strictValidator(t, got["public/big"].DocumentSchema)
	s := openActive(t, f, []testsupport.Binding{bindingFor(t, got, "public/big")}, 60*time.Second)
	f.exec(t, `INSERT INTO public.big SELECT 2, t, b, j, small FROM public.big WHERE id = 1`)
	s.WaitFor(t, 60*time.Second, "the replicated row", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 2 })

	docs := docsOf(s, 0)
	validateDocs(t, validator, docs)
	var jsonSize int
	if err := f.conn.QueryRow(context.Background(), `SELECT octet_length(j::text) FROM public.big WHERE id = 1`).Scan(&jsonSize); err != nil {
		t.Fatal(err)
	}
	for i, raw := range docs {
		var doc struct {
			T     string          `json:"t"`
			B     []byte          `json:"b"`
			J     json.RawMessage `json:"j"`
			Small string          `json:"small"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if wantLen := limit / 3 * 3; len(doc.T) != wantLen || doc.T != strings.Repeat("€", limit/3) {
			t.Errorf("document %d: text of %d bytes, want %d bytes of whole characters", i, len(doc.T), wantLen)
		}
		if len(doc.B) != limit || doc.B[0] != 0 || doc.B[limit-1] != 0xff {
			t.Errorf("document %d: bytea of %d bytes, want the first %d", i, len(doc.B), limit)
		}
		if want := fmt.Sprintf(`{"flow_truncated":true,"original_size":%d}`, jsonSize); string(doc.J) != want {
			t.Errorf("document %d: jsonb %.100s, want %s", i, doc.J, want)
		}
		if doc.Small != "small" {
			t.Errorf("document %d: a small value was changed: %q", i, doc.Small)
		}
	}
}
