package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// partitionsSetup creates public.measures, partitioned by year, with a
// sub-partitioned year and a default partition, and rows in every leaf.
const partitionsSetup = `
CREATE TABLE public.measures (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.measures_2023 PARTITION OF public.measures FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.measures_2024 PARTITION OF public.measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
    PARTITION BY RANGE (id);
CREATE TABLE public.measures_2024_low PARTITION OF public.measures_2024 FOR VALUES FROM (MINVALUE) TO (100);
CREATE TABLE public.measures_2024_high PARTITION OF public.measures_2024 FOR VALUES FROM (100) TO (MAXVALUE);
CREATE TABLE public.measures_other PARTITION OF public.measures DEFAULT;
INSERT INTO public.measures
    SELECT g, date '2022-07-01' + (g % 4) * interval '1 year', 'v' || g FROM generate_series(1, 40) g;
INSERT INTO public.measures SELECT g, '2024-06-01', 'high' || g FROM generate_series(100, 104) g;
`

// partitionChanges touches every leaf, directly and through the root, and
// moves rows between partitions.
const partitionChanges = `
INSERT INTO public.measures VALUES (1000, '2023-05-05', 'via root');
INSERT INTO public.measures_2024_high VALUES (1001, '2024-05-05', 'into a leaf');
UPDATE public.measures SET v = 'updated' WHERE id IN (2, 3);
UPDATE public.measures SET at = '2030-01-01' WHERE id = 5;
UPDATE public.measures SET id = 150 WHERE id = 6;
DELETE FROM public.measures_2023 WHERE id = 9;
DELETE FROM public.measures WHERE id = 100;
`

const measuresQuery = `SELECT format('[%s,"%s"]', id, at), json_build_object('id', id, 'at', at, 'v', v)::text FROM public.measures`

// TestPartitionsViaRoot captures a partitioned table under a publication
// with publish_via_partition_root: the root is discovered and captured, its
// partitions are not discovered, the backfill reads every partition's rows
// through the root, and every change, to whichever partition, arrives
// under the root's name.
func TestPartitionsViaRoot(t *testing.T) {
	f := newFixture(t)
	f.advanced["backfill_chunk_size"] = 7
	f.exec(t, partitionsSetup)

	got := f.discover(t)
	var names []string
	for name := range got {
		if strings.HasPrefix(name, "public/measures") {
			names = append(names, name)
		}
	}
	if !slices.Equal(names, []string{"public/measures"}) {
		t.Fatalf("discovered %q, want only the root public/measures", names)
	}
	b := bindingFor(t, got, "public/measures")
	if !slices.Equal(b.Key, []string{"/id", "/at"}) {
		t.Errorf("the root's key is %q, want its primary key [/id /at]", b.Key)
	}
	schema := strictValidator(t, got["public/measures"].DocumentSchema)

	s := openActive(t, f, []testsupport.Binding{b}, 30*time.Second)
	backfilled := docsOf(s, 0)
	if len(backfilled) != 45 {
		t.Fatalf("backfilled %d rows through the root, want the 45 rows of its 4 leaves", len(backfilled))
	}
	f.exec(t, partitionChanges)
	// 2 inserts, 2 updates, 2 moves (a delete and an insert each), 2 deletes.
	s.WaitFor(t, 30*time.Second, "the changes to the partitions", func(s *testsupport.Session) bool { return len(docsOf(s, 0)) >= 45+10 })

	docs := docsOf(s, 0)
	for _, raw := range docs {
		if src := parseDoc(t, raw).Meta.Source; src.Schema != "public" || src.Table != "measures" {
			t.Errorf("a document names %s.%s, not the root public.measures: %.200s", src.Schema, src.Table, raw)
		}
	}
	validateDocs(t, schema, docs)
	reduceAgainstTable(t, f, docs, b.Key, measuresQuery)
}

// TestPartitionsViaLeaves captures the same table under a publication that
// publishes each partition as itself: the leaf partitions are discovered
// (not the root, nor the intermediate partitioned table), each is a binding
// of its own, and a change arrives under the name of the leaf that holds
// the row, so a row moving between partitions is a delete in one binding
// and an insert in another. A binding of the root cannot be captured, as
// the stream would never name it: opening one fails.
func TestPartitionsViaLeaves(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `DROP PUBLICATION flow_publication;
		CREATE PUBLICATION flow_publication FOR ALL TABLES WITH (publish_via_partition_root = false)`)
	f.exec(t, partitionsSetup)

	got := f.discover(t)
	leaves := []string{"measures_2023", "measures_2024_high", "measures_2024_low", "measures_other"}
	var names []string
	for name := range got {
		if strings.HasPrefix(name, "public/measures") {
			names = append(names, strings.TrimPrefix(name, "public/"))
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, leaves) {
		t.Fatalf("discovered %q, want the leaf partitions %q", names, leaves)
	}
	var bindings []testsupport.Binding
	for _, leaf := range leaves {
		bindings = append(bindings, bindingFor(t, got, "public/"+leaf))
	}
	s := openActive(t, f, bindings, 30*time.Second)
	if n := len(s.Docs()); n != 45 {
		t.Fatalf("backfilled %d rows from the leaves, want 45", n)
	}
	f.exec(t, partitionChanges)
	s.WaitFor(t, 30*time.Second, "the changes to the partitions", func(s *testsupport.Session) bool { return len(s.Docs()) >= 45+10 })

	var all []string
	for i, leaf := range leaves {
		docs := docsOf(s, i)
		for _, raw := range docs {
			if src := parseDoc(t, raw).Meta.Source; src.Table != leaf {
				t.Errorf("a document of binding %s names table %s: %.200s", leaf, src.Table, raw)
			}
		}
		reduceAgainstTable(t, f, docs, bindings[i].Key, strings.Replace(measuresQuery, "public.measures", "public."+leaf, 1))
		for _, raw := range docs {
			all = append(all, string(raw))
		}
	}
	moved := 0
	for _, raw := range all {
		if d := parseDoc(t, []byte(raw)); d.Meta.Op == "c" && d.Fields["id"] == float64(5) && d.Meta.Source.Table == "measures_other" {
			moved++
		}
	}
	if moved != 1 {
		t.Errorf("the row moved from measures_2023 to measures_other should be created once in measures_other, seen %d times", moved)
	}

	root := f.connector.Open(t, testsupport.OpenRequest(f.config(), []testsupport.Binding{{Namespace: "public", Stream: "measures", Key: []string{"/id", "/at"}}}, nil), testsupport.SessionOptions{})
	waitUntil(t, 30*time.Second, "the capture of the root to fail", func() bool { exited, _ := root.Exited(); return exited })
	if _, err := root.Exited(); err == nil || !strings.Contains(lastLine(root.Stderr()), "measures") {
		t.Errorf("opening a binding of the root under a publication without publish_via_partition_root should fail naming the table; exit %v, stderr ends %q", err, lastLine(root.Stderr()))
	}
}
