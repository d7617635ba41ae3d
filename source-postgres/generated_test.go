package main

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

// TestGeneratedAndDroppedColumns checks that backfilled and replicated
// documents, and the discovered schema, agree on the columns of a table
// with stored generated columns and dropped columns. Generated columns are
// left out everywhere: pgoutput does not send them (before PostgreSQL 18),
// so a backfilled value could never be kept up to date. Dropped columns
// never appear, not even by their internal "........pg.dropped.N........"
// names.
func TestGeneratedAndDroppedColumns(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.orders (
		id int PRIMARY KEY,
		gone_before text,
		price numeric NOT NULL,
		qty int NOT NULL,
		total numeric GENERATED ALWAYS AS (price * qty) STORED,
		gone_after int,
		label text GENERATED ALWAYS AS ('#' || id) STORED)`)
	f.exec(t, `ALTER TABLE public.orders DROP COLUMN gone_before`)
	f.exec(t, `ALTER TABLE public.orders ADD COLUMN note text`)
	f.exec(t, `ALTER TABLE public.orders DROP COLUMN gone_after`)
	// From 18 on, a FULL replica identity holding generated columns that
	// the publication does not publish makes the server refuse UPDATE and
	// DELETE; there the primary key stays the identity.
	full := !f.server(t).Has(pgversion.PublicationGeneratedColumns)
	if full {
		f.exec(t, `ALTER TABLE public.orders REPLICA IDENTITY FULL`)
	}
	f.exec(t, `INSERT INTO public.orders (id, price, qty, note) VALUES (1, 2.50, 4, 'backfilled')`)
	want := []string{"_meta", "id", "note", "price", "qty"}

	got := f.discover(t)
	var schema struct {
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(got["public/orders"].DocumentSchema, &schema); err != nil {
		t.Fatal(err)
	}
	if props := slices.Sorted(maps.Keys(schema.Defs["PublicOrders"].Properties)); !slices.Equal(props, want[1:]) {
		t.Errorf("the discovered schema has the columns %q, want %q", props, want[1:])
	}

	s := openActive(t, f, []testsupport.Binding{bindingFor(t, got, "public/orders")}, 30*time.Second)
	f.exec(t, `INSERT INTO public.orders (id, price, qty, note) VALUES (2, 1.25, 3, 'replicated')`)
	f.exec(t, `UPDATE public.orders SET qty = qty + 1`)
	f.exec(t, `DELETE FROM public.orders WHERE id = 2`)
	s.WaitFor(t, 30*time.Second, "the insert, updates and delete", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 5 })
	docs := docsOf(s, 0)
	for _, raw := range docs {
		if !full && parseDoc(t, raw).Meta.Op == "d" {
			continue // only the key identifies a deleted row
		}
		if fields := slices.Sorted(maps.Keys(rawFields(t, raw))); !slices.Equal(fields, want) {
			t.Errorf("a document has the members %q, want %q: %.300s", fields, want, raw)
		}
		if before := parseDoc(t, raw).Meta.Before; before != nil && full {
			if fields := slices.Sorted(maps.Keys(before)); !slices.Equal(fields, want[1:]) {
				t.Errorf("_meta.before has the members %q, want %q", fields, want[1:])
			}
		}
	}
	validateDocs(t, strictValidator(t, got["public/orders"].DocumentSchema), docs)
	reduceAgainstTable(t, f, docs, []string{"/id"},
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'price', price::text, 'qty', qty, 'note', note)::text FROM public.orders`)
}
