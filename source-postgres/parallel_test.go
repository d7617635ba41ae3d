package main

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestParallelBackfill backfills a large table split into key ranges and
// two smaller tables at once over 3 connections, while a writer inserts,
// updates and deletes rows all over the key space (range boundaries
// included, since the boundaries are sampled keys of the table). The
// committed documents, reduced by key, must equal each table exactly; no
// row may be backfilled twice; and the capture must never hold more
// connections for queries than advanced.backfill_connections, counted in
// pg_stat_activity, while using more than one.
func TestParallelBackfill(t *testing.T) {
	f := newFixture(t)
	const conns = 3
	f.advanced["backfill_chunk_size"] = 1000
	f.advanced["backfill_connections"] = conns
	f.exec(t, `CREATE TABLE public.big (id int PRIMARY KEY, v text)`)
	f.exec(t, `INSERT INTO public.big SELECT g, 'b' || g FROM generate_series(1, 60000) g`)
	f.exec(t, `CREATE TABLE public.small1 (k text PRIMARY KEY, v int)`)
	f.exec(t, `INSERT INTO public.small1 SELECT 'k' || g, g FROM generate_series(1, 3000) g`)
	f.exec(t, `CREATE TABLE public.small2 (a int, b int, v int, PRIMARY KEY (a, b))`)
	f.exec(t, `INSERT INTO public.small2 SELECT g % 7, g, g FROM generate_series(1, 3000) g`)
	f.exec(t, `ANALYZE public.big, public.small1, public.small2`)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer := f.pg.Connect(t, f.db)
	// The test's own connections are not the capture's.
	mine := []int32{int32(f.conn.PgConn().PID()), int32(writer.PgConn().PID())}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for ctx.Err() == nil {
			id := 1 + rng.IntN(70000)
			var err error
			switch rng.IntN(4) {
			case 0:
				_, err = writer.Exec(ctx, `DELETE FROM public.big WHERE id = $1`, id)
			case 1:
				_, err = writer.Exec(ctx, `INSERT INTO public.big VALUES ($1, 'new') ON CONFLICT (id) DO UPDATE SET v = 'upserted'`, id)
			case 2:
				_, err = writer.Exec(ctx, `UPDATE public.big SET v = v || '+' WHERE id BETWEEN $1 AND $1 + 50`, id)
			default:
				if _, err = writer.Exec(ctx, `UPDATE public.small1 SET v = v + 1 WHERE k = $1`, "k"+strconv.Itoa(1+rng.IntN(3000))); err == nil {
					_, err = writer.Exec(ctx, `DELETE FROM public.small2 WHERE a = $1 AND b = $2`, rng.IntN(7), rng.IntN(3000))
				}
			}
			if err != nil && ctx.Err() == nil {
				t.Errorf("writer: %v", err)
				return
			}
		}
	})

	bindings := []testsupport.Binding{
		{Namespace: "public", Stream: "big", Key: []string{"/id"}},
		{Namespace: "public", Stream: "small1", Key: []string{"/k"}},
		{Namespace: "public", Stream: "small2", Key: []string{"/a", "/b"}},
	}
	keys := []string{
		protocol.StateKey([]string{"public", "big"}, 0),
		protocol.StateKey([]string{"public", "small1"}, 0),
		protocol.StateKey([]string{"public", "small2"}, 0),
	}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	peak := 0
	s.WaitFor(t, 120*time.Second, "every table backfilled", func(s *testsupport.Session) bool {
		var n int
		if err := f.conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND backend_type = 'client backend' AND NOT pid = ANY($1)`, mine).Scan(&n); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, n)
		st := s.State()
		for _, k := range keys {
			if streamMode(t, st, k) != "Active" {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	if peak > conns {
		t.Errorf("the capture held %d query connections, more than advanced.backfill_connections (%d)", peak, conns)
	}
	if peak < 2 {
		t.Errorf("the capture held at most %d query connection during the backfill: nothing was read at once", peak)
	}
	// A marker row, streamed after the writer stopped, says every change
	// before it is in.
	f.exec(t, `INSERT INTO public.small1 VALUES ('zz-marker', 0)`)
	s.WaitFor(t, 60*time.Second, "the marker", func(s *testsupport.Session) bool {
		for _, raw := range docsOf(s, 1) {
			if parseDoc(t, raw).Fields["k"] == "zz-marker" {
				return true
			}
		}
		return false
	})
	backfilled := map[any]int{}
	for _, raw := range docsOf(s, 0) {
		d := parseDoc(t, raw)
		if d.Meta.Source.Snapshot {
			backfilled[d.Fields["id"]]++
		}
	}
	for id, n := range backfilled {
		if n > 1 {
			t.Errorf("row %v of public.big was backfilled %d times", id, n)
		}
	}
	if len(backfilled) < 50000 {
		t.Errorf("only %d rows of public.big were backfilled", len(backfilled))
	}
	reduceAgainstTable(t, f, docsOf(s, 0), []string{"/id"}, `SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM public.big`)
	reduceAgainstTable(t, f, docsOf(s, 1), []string{"/k"}, `SELECT json_build_array(k)::text, json_build_object('k', k, 'v', v)::text FROM public.small1`)
	reduceAgainstTable(t, f, docsOf(s, 2), []string{"/a", "/b"}, `SELECT '[' || a || ',' || b || ']', json_build_object('a', a, 'b', b, 'v', v)::text FROM public.small2`)
	if err := s.Stop(t); err != nil {
		t.Fatal(err)
	}
}
