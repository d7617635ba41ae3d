package polling

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// BenchmarkFullRefresh measures full-refresh polls of a table of
// POLL_BENCH_ROWS rows (default 1,000,000, about 100 bytes each: bench/'s
// table), delivered as engine events, beside COPY (query) TO STDOUT of the
// same query on the same server, the limit. It reports rows/s of the first
// poll (every id new), of the second (every id looked up in the first's,
// and the first's ids checked for deletions) and of COPY.
//
//	go test -run '^$' -bench FullRefresh -benchtime 1x ./source-postgres/polling/
func BenchmarkFullRefresh(b *testing.B) {
	rows := int64(1_000_000)
	if v := os.Getenv("POLL_BENCH_ROWS"); v != "" {
		rows, _ = strconv.ParseInt(v, 10, 64)
	}
	ctx := context.Background()
	pg := testsupport.StartPostgres(b, testsupport.Options{Settings: map[string]string{"shared_buffers": "512MB", "autovacuum": "off", "jit": "off"}})
	db := pg.NewDatabase(b)
	pg.Exec(b, db, `CREATE TABLE public.bench (id bigint PRIMARY KEY, n integer NOT NULL, s text NOT NULL,
		ts timestamptz NOT NULL, amount numeric(12,2) NOT NULL, doc jsonb)`)
	pg.Exec(b, db, `INSERT INTO public.bench SELECT g, (g * 7919) % 100000, substr(md5(g::text), 1, 24),
		timestamptz '2024-01-01 00:00:00+00' + g * interval '1234567 microseconds', round((g % 100000) * 1.37, 2),
		jsonb_build_object('k', g % 1000, 'tag', 'tag-' || g % 97) FROM generate_series(1, $1::bigint) g`, rows)
	pg.Exec(b, db, "VACUUM ANALYZE public.bench")
	query := "SELECT id, n, s, ts, amount, doc FROM public.bench"

	conn := pg.ConnectWith(b, db, pgtypes.SessionParams())
	types, err := pgtypes.LoadRegistry(ctx, conn)
	if err != nil {
		b.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)

	b.ResetTimer()
	var pollTime, repollTime, copyTime time.Duration
	for b.Loop() {
		// Closing the stream cancels the poll it is in the middle of,
		// which closes the connection: each round gets its own.
		b.StopTimer()
		conn := pg.ConnectWith(b, db, pgtypes.SessionParams())
		b.StartTimer()
		start := time.Now()
		tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY ("+query+") TO STDOUT")
		if err != nil || tag.RowsAffected() != rows {
			b.Fatalf("COPY: %v (%d rows)", err, tag.RowsAffected())
		}
		copyTime += time.Since(start)

		start = time.Now()
		bd, err := Prepare(ctx, conn.PgConn(), types, Spec{
			StateKey: "bench", Stream: sqlcapture.StreamID{Schema: "public", Table: "bench"},
			Query: query, IDColumns: []string{"id"}, Interval: time.Nanosecond,
		})
		if err != nil {
			b.Fatal(err)
		}
		src := NewSource(conn.PgConn(), types, []*Binding{bd}, log)
		stream, err := src.StartReplication(ctx, "", "")
		if err != nil {
			b.Fatal(err)
		}
		var docs, commits int64
	drain:
		for batch := range stream.Events() {
			for _, ev := range batch.Events {
				switch ev.(type) {
				case *sqlcapture.Change:
					docs++
				case *sqlcapture.Commit:
					commits++
					if commits == 1 {
						pollTime += time.Since(start)
						start = time.Now()
						continue
					}
					repollTime += time.Since(start)
					stream.Release(batch)
					break drain
				}
			}
			stream.Release(batch)
		}
		if err := stream.Close(ctx); err != nil {
			b.Fatal(err)
		}
		if docs != 2*rows {
			b.Fatalf("the poll emitted %d documents, want %d (%v)", docs, rows, stream.Err())
		}
	}
	n := float64(b.N) * float64(rows)
	b.ReportMetric(n/pollTime.Seconds(), "poll-rows/s")
	b.ReportMetric(n/repollTime.Seconds(), "repoll-rows/s")
	b.ReportMetric(n/copyTime.Seconds(), "copy-rows/s")
	b.ReportMetric(copyTime.Seconds()/pollTime.Seconds(), "poll/copy")
}
