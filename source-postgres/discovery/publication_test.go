package discovery

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgcapture/source-postgres/pgversion"
)

const publicationSetup = `
CREATE SCHEMA other;
CREATE TABLE public.plain (id int PRIMARY KEY, v text, w int);
CREATE TABLE public.unlisted (id int PRIMARY KEY);
CREATE TABLE other.elsewhere (id int PRIMARY KEY);
CREATE TABLE public.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.events_2023 PARTITION OF public.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE other.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
`

// TestReadPublication checks ReadPublication, which reads the catalogs
// under pg_publication_tables, against that view, for publications of
// every shape on the server's major.
func TestReadPublication(t *testing.T) {
	conn, _ := newDatabase(t, publicationSetup)
	server, err := pgversion.Read(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	shapes := []string{
		"FOR ALL TABLES",
		"FOR ALL TABLES WITH (publish_via_partition_root = true)",
		"FOR TABLE public.plain, public.events",
		"FOR TABLE public.plain, public.events WITH (publish_via_partition_root = true)",
		"FOR TABLE public.events_2023, other.elsewhere",
		"FOR TABLE public.events_2023 WITH (publish_via_partition_root = true)",
	}
	if server.Has(pgversion.PublicationSchemas) {
		shapes = append(shapes,
			"FOR TABLES IN SCHEMA other",
			"FOR TABLES IN SCHEMA other WITH (publish_via_partition_root = true)",
			"FOR TABLES IN SCHEMA other, TABLE public.plain")
	}
	var oids []uint32
	if err := conn.QueryRow(t.Context(), `SELECT array_agg(c.oid) FROM pg_class c
		WHERE c.relnamespace IN ('public'::regnamespace, 'other'::regnamespace) AND c.relkind IN ('r', 'p')`).Scan(&oids); err != nil {
		t.Fatal(err)
	}
	for i, shape := range shapes {
		name := fmt.Sprintf("pub%d", i)
		if _, err := conn.Exec(t.Context(), "CREATE PUBLICATION "+name+" "+shape); err != nil {
			t.Fatalf("%s: %v", shape, err)
		}
		p, err := ReadPublication(t.Context(), conn, server, name, oids)
		if err != nil {
			t.Fatalf("%s: %v", shape, err)
		}
		var got []string
		for _, oid := range oids {
			if p.Publishes(oid) {
				var rel string
				if err := conn.QueryRow(t.Context(), "SELECT $1::oid::regclass::text", oid).Scan(&rel); err != nil {
					t.Fatal(err)
				}
				got = append(got, rel)
			}
		}
		slices.Sort(got)
		var want []string
		if err := conn.QueryRow(t.Context(), `SELECT coalesce(array_agg(format('%I.%I', schemaname, tablename)::regclass::text ORDER BY 1), '{}')
			FROM pg_publication_tables WHERE pubname = $1`, name).Scan(&want); err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("publication %s: ReadPublication publishes %v, pg_publication_tables lists %v", shape, got, want)
		}
		if !p.Exists || p.AllTables != strings.HasPrefix(shape, "FOR ALL TABLES") || p.ViaRoot != strings.Contains(shape, "publish_via_partition_root") {
			t.Errorf("publication %s: read as %+v", shape, p)
		}
	}
	if p, err := ReadPublication(t.Context(), conn, server, "missing", oids); err != nil || p.Exists || len(p.Tables) != 0 {
		t.Errorf("a missing publication: %+v, %v", p, err)
	}
}
