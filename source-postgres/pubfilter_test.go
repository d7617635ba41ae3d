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

// TestPublicationRowFilterAndColumnList checks that the backfill reads
// what a publication with a row filter and a column list streams: only the
// rows its WHERE clause selects and only its columns, in the discovered
// schema too. A row that an UPDATE moves out of the filter arrives as a
// delete, one moved into it as an insert, and the collection ends equal to
// the filtered table.
func TestPublicationRowFilterAndColumnList(t *testing.T) {
	f := newFixture(t)
	if s := f.server(t); !s.Has(pgversion.PublicationRowFilters) {
		t.Skipf("PostgreSQL %s has no publication row filters or column lists (new in 15)", s.Version)
	}
	f.exec(t, `CREATE TABLE public.orders (id int PRIMARY KEY, region text NOT NULL, amount int, secret text)`)
	// UPDATE and DELETE need the filter's columns in the replica identity,
	// and the column list must hold the identity.
	f.exec(t, `CREATE UNIQUE INDEX orders_identity ON public.orders (id, region)`)
	f.exec(t, `ALTER TABLE public.orders REPLICA IDENTITY USING INDEX orders_identity`)
	f.exec(t, `INSERT INTO public.orders SELECT g, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END, g * 10, 'hidden' FROM generate_series(1, 30) g`)
	f.exec(t, `DROP PUBLICATION flow_publication`)
	f.exec(t, `CREATE PUBLICATION flow_publication FOR TABLE public.orders (id, region, amount) WHERE (region = 'eu')
		WITH (publish_via_partition_root = true)`)
	want := []string{"amount", "id", "region"}
	query := `SELECT json_build_array(id)::text, json_build_object('id', id, 'region', region, 'amount', amount)::text
		FROM public.orders WHERE region = 'eu'`

	got := f.discover(t)
	var schema struct {
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(got["public/orders"].DocumentSchema, &schema); err != nil {
		t.Fatal(err)
	}
	if props := slices.Sorted(maps.Keys(schema.Defs["PublicOrders"].Properties)); !slices.Equal(props, want) {
		t.Errorf("the discovered schema has the columns %q, want the column list's %q", props, want)
	}

	s := openActive(t, f, []testsupport.Binding{bindingFor(t, got, "public/orders")}, 30*time.Second)
	backfilled := docsOf(s, 0)
	if len(backfilled) != 10 {
		t.Errorf("the backfill read %d rows, want the 10 the filter selects", len(backfilled))
	}
	reduceAgainstTable(t, f, backfilled, []string{"/id"}, query)

	f.exec(t, `INSERT INTO public.orders VALUES (100, 'eu', 1, 'hidden'), (101, 'us', 2, 'hidden')`)
	f.exec(t, `UPDATE public.orders SET region = 'eu' WHERE id = 1`)                     // enters the filter
	f.exec(t, `UPDATE public.orders SET region = 'us' WHERE id = 3`)                     // leaves it
	f.exec(t, `UPDATE public.orders SET amount = amount + 1, secret = 'x' WHERE id = 6`) // stays in
	f.exec(t, `DELETE FROM public.orders WHERE id IN (9, 2)`)
	s.WaitFor(t, 30*time.Second, "the changes the publication streams", func(s *testsupport.Session) bool {
		return len(docsOf(s, 0)) >= len(backfilled)+5
	})
	docs := docsOf(s, 0)
	if n := len(docs) - len(backfilled); n != 5 {
		t.Errorf("%d changes streamed, want 5: insert 100, id 1 entering, id 3 leaving, id 6 updated, id 9 deleted", n)
	}
	// pgoutput turns an UPDATE that moves a row out of the filter into a
	// DELETE, and one that moves a row into it into an INSERT: so must the
	// documents be.
	wantOp := map[float64]string{100: "c", 1: "c", 3: "d", 6: "u", 9: "d"}
	for _, raw := range docs[len(backfilled):] {
		d := parseDoc(t, raw)
		id, _ := d.Fields["id"].(float64)
		if want, ok := wantOp[id]; !ok || d.Meta.Op != want {
			t.Errorf("the change of id %v is a %q document, want %q: %.300s", id, d.Meta.Op, want, raw)
		}
	}
	for _, raw := range docs {
		fields := rawFields(t, raw)
		delete(fields, "_meta")
		if _, ok := fields["secret"]; ok {
			t.Errorf("a document has the unpublished column secret: %.300s", raw)
		}
	}
	reduceAgainstTable(t, f, docs, []string{"/id"}, query)
}

// TestPublishedGeneratedColumns checks that when the publication publishes
// generated columns (publish_generated_columns = stored, PostgreSQL 18),
// the backfill, the stream and the schema carry them, and agree; and that
// they all leave out a virtual generated column (new in 18), which pgoutput
// never sends.
func TestPublishedGeneratedColumns(t *testing.T) {
	f := newFixture(t)
	if s := f.server(t); !s.Has(pgversion.PublicationGeneratedColumns) {
		t.Skipf("PostgreSQL %s does not publish generated columns (publish_generated_columns is new in 18)", s.Version)
	}
	f.exec(t, `CREATE TABLE public.orders (id int PRIMARY KEY, price int NOT NULL, qty int NOT NULL,
		total int GENERATED ALWAYS AS (price * qty) STORED, doubled int GENERATED ALWAYS AS (price * 2) VIRTUAL)`)
	// The primary key stays the replica identity: PostgreSQL 18 refuses
	// UPDATE and DELETE under a FULL one that holds an unpublished
	// generated column, as the virtual one is.
	f.exec(t, `INSERT INTO public.orders (id, price, qty) VALUES (1, 3, 4)`)
	f.exec(t, `DROP PUBLICATION flow_publication`)
	f.exec(t, `CREATE PUBLICATION flow_publication FOR ALL TABLES WITH (publish_via_partition_root = true, publish_generated_columns = stored)`)

	got := f.discover(t)
	var schema struct {
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(got["public/orders"].DocumentSchema, &schema); err != nil {
		t.Fatal(err)
	}
	if _, ok := schema.Defs["PublicOrders"].Properties["total"]; !ok {
		t.Errorf("the discovered schema lacks the published generated column total")
	}
	if _, ok := schema.Defs["PublicOrders"].Properties["doubled"]; ok {
		t.Errorf("the discovered schema has the virtual generated column doubled, which is never published")
	}
	s := openActive(t, f, []testsupport.Binding{bindingFor(t, got, "public/orders")}, 30*time.Second)
	f.exec(t, `INSERT INTO public.orders (id, price, qty) VALUES (2, 5, 6)`)
	f.exec(t, `UPDATE public.orders SET qty = qty + 1`)
	s.WaitFor(t, 30*time.Second, "the insert and updates", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 4 })
	for _, raw := range docsOf(s, 0) {
		if _, ok := rawFields(t, raw)["total"]; !ok {
			t.Errorf("a document lacks the generated column total: %.300s", raw)
		}
		if _, ok := rawFields(t, raw)["doubled"]; ok {
			t.Errorf("a document has the virtual generated column doubled: %.300s", raw)
		}
	}
	reduceAgainstTable(t, f, docsOf(s, 0), []string{"/id"},
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'price', price, 'qty', qty, 'total', total)::text FROM public.orders`)
}
