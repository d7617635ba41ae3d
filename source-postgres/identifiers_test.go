package main

import (
	"slices"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// TestOddIdentifiers captures tables whose schema, table and column names
// need quoting (upper case, spaces, quotes, unicode, reserved words, JSON
// pointer characters), with a composite key of such columns read in
// several chunks, and two tables whose names differ only in case.
func TestOddIdentifiers(t *testing.T) {
	f := newFixture(t)
	f.advanced["backfill_chunk_size"] = 3
	f.exec(t, `CREATE SCHEMA "Mixed ""Schema"" ü"`)
	f.exec(t, `CREATE TABLE "Mixed ""Schema"" ü"."Order Items ""Q"" ✓" (
		"select" int NOT NULL,
		"From Col" text NOT NULL,
		"a/b~c" text NOT NULL,
		"order" text,
		"ünïcode ✓" text,
		"has""quote" text,
		" lead space" int,
		"Mixed" boolean,
		PRIMARY KEY ("From Col", "select", "a/b~c"))`)
	f.exec(t, `INSERT INTO "Mixed ""Schema"" ü"."Order Items ""Q"" ✓"
		SELECT g % 3, 'k' || (g % 4), 'p' || g, 'o' || g, 'ü' || g, 'q"' || g, g, g % 2 = 0 FROM generate_series(1, 10) g`)
	f.exec(t, `CREATE TABLE public."Users" (id int PRIMARY KEY, "Name" text)`)
	f.exec(t, `CREATE TABLE public.users (id int PRIMARY KEY, name text)`)
	f.exec(t, `INSERT INTO public."Users" VALUES (1, 'upper'), (2, 'UPPER')`)
	f.exec(t, `INSERT INTO public.users VALUES (1, 'lower')`)

	got := f.discover(t)
	names := []string{"Mixed__Schema__ü/Order_Items__Q___", "public/Users", "public/users"}
	var bindings []testsupport.Binding
	for _, name := range names {
		bindings = append(bindings, bindingFor(t, got, name))
	}
	odd := bindings[0]
	if odd.Namespace != `Mixed "Schema" ü` || odd.Stream != `Order Items "Q" ✓` {
		t.Errorf("the resource names %q.%q, not the table exactly", odd.Namespace, odd.Stream)
	}
	if want := []string{"/From Col", "/select", "/a~1b~0c"}; !slices.Equal(odd.Key, want) {
		t.Errorf("the key is %q, want %q", odd.Key, want)
	}
	s := openActive(t, f, bindings, 30*time.Second)
	if n := len(docsOf(s, 0)); n != 10 {
		t.Fatalf("backfilled %d rows of the odd table, want 10", n)
	}

	f.exec(t, `INSERT INTO "Mixed ""Schema"" ü"."Order Items ""Q"" ✓" VALUES (7, 'new', 'p', 'o', 'ü', 'q', 0, true)`)
	f.exec(t, `UPDATE "Mixed ""Schema"" ü"."Order Items ""Q"" ✓" SET "order" = 'updated', "has""quote" = NULL WHERE "select" = 1`)
	f.exec(t, `UPDATE "Mixed ""Schema"" ü"."Order Items ""Q"" ✓" SET "a/b~c" = 'moved' WHERE "a/b~c" = 'p2'`)
	f.exec(t, `DELETE FROM "Mixed ""Schema"" ü"."Order Items ""Q"" ✓" WHERE "a/b~c" = 'p3'`)
	f.exec(t, `INSERT INTO public."Users" VALUES (3, 'UP')`)
	f.exec(t, `UPDATE public.users SET name = 'low' WHERE id = 1`)
	s.WaitFor(t, 30*time.Second, "the changes", func(s *testsupport.Session) bool {
		return len(docsOf(s, 0)) >= 10+1+4+2+1 && len(docsOf(s, 1)) >= 3 && len(docsOf(s, 2)) >= 2
	})

	for i, b := range bindings {
		validateDocs(t, strictValidator(t, got[names[i]].DocumentSchema), docsOf(s, i))
		for _, raw := range docsOf(s, i) {
			if src := parseDoc(t, raw).Meta.Source; src.Schema != b.Namespace || src.Table != b.Stream {
				t.Errorf("a document of %q.%q names %q.%q", b.Namespace, b.Stream, src.Schema, src.Table)
			}
		}
	}
	reduceAgainstTable(t, f, docsOf(s, 0), odd.Key, `SELECT format('["%s",%s,"%s"]', "From Col", "select", "a/b~c"),
		json_build_object('select', "select", 'From Col', "From Col", 'a/b~c', "a/b~c", 'order', "order",
			'ünïcode ✓', "ünïcode ✓", 'has"quote', "has""quote", ' lead space', " lead space", 'Mixed', "Mixed")::text
		FROM "Mixed ""Schema"" ü"."Order Items ""Q"" ✓"`)
	reduceAgainstTable(t, f, docsOf(s, 1), []string{"/id"},
		`SELECT format('[%s]', id), json_build_object('id', id, 'Name', "Name")::text FROM public."Users"`)
	reduceAgainstTable(t, f, docsOf(s, 2), []string{"/id"},
		`SELECT format('[%s]', id), json_build_object('id', id, 'name', name)::text FROM public.users`)
}

// TestColumnNamedMeta captures a table with a column named _meta, which
// would collide with the documents' metadata: the column is left out of
// documents and of the schema, by both the backfill and replication.
func TestColumnNamedMeta(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.with_meta (id int PRIMARY KEY, "_meta" text, note text)`)
	f.exec(t, `INSERT INTO public.with_meta VALUES (1, 'shadowed', 'backfilled')`)
	got := f.discover(t)
	s := openActive(t, f, []testsupport.Binding{bindingFor(t, got, "public/with_meta")}, 30*time.Second)
	f.exec(t, `INSERT INTO public.with_meta VALUES (2, 'shadowed', 'replicated')`)
	f.exec(t, `UPDATE public.with_meta SET "_meta" = 'changed', note = 'updated' WHERE id = 1`)
	s.WaitFor(t, 30*time.Second, "the insert and update", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 3 })
	docs := docsOf(s, 0)
	for _, raw := range docs {
		fields := rawFields(t, raw) // fails on a duplicated _meta
		if meta := fields["_meta"]; len(meta) == 0 || meta[0] != '{' {
			t.Errorf("_meta is %s, not the metadata object", meta)
		}
		if len(fields) != 3 {
			t.Errorf("a document has %d members, want _meta, id and note: %s", len(fields), raw)
		}
	}
	validateDocs(t, strictValidator(t, got["public/with_meta"].DocumentSchema), docs)
	reduceAgainstTable(t, f, docs, []string{"/id"},
		`SELECT format('[%s]', id), json_build_object('id', id, 'note', note)::text FROM public.with_meta`)
}
