package backfill

import (
	"context"
	"testing"
	"time"

	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// A table rewrite (ALTER TABLE … TYPE, VACUUM FULL, CLUSTER) is not
// MVCC-safe: a snapshot taken before it commits sees the rewritten table as
// empty. A chunk whose snapshot was taken while a rewrite held the table's
// lock would read no rows, and the backfill would end there with every
// remaining row lost. The chunk must take its snapshot only once it holds
// the table.
func TestChunkWaitsOutATableRewrite(t *testing.T) {
	ctx := context.Background()
	pg := testsupport.StartPostgres(t, testsupport.Options{})
	db := pg.NewDatabase(t)
	pg.Exec(t, db, `CREATE TABLE public.r (id integer PRIMARY KEY, v integer NOT NULL);
		INSERT INTO public.r SELECT g, g FROM generate_series(1, 500) g`)

	conn, rewriter, observer := connectAsCapture(t, pg, db), connectAsCapture(t, pg, db), connectAsCapture(t, pg, db)
	table := onlyTable(ctx, t, conn)

	// The rewrite holds the table's ACCESS EXCLUSIVE lock until it commits.
	if _, err := rewriter.Exec(ctx, "BEGIN; ALTER TABLE public.r ALTER COLUMN v TYPE bigint"); err != nil {
		t.Fatal(err)
	}
	scanner := quietScanner(conn)
	type result struct {
		rows int
		done bool
		err  error
	}
	out := make(chan result, 1)
	go func() {
		n := 0
		_, done, err := scanner.ScanChunk(ctx, table, nil, nil, 0, 10000, func(sqlcapture.Row) error { n++; return nil })
		out <- result{n, done, err}
	}()

	// Wait until the chunk waits for the table's lock, then commit the rewrite.
	pid := conn.PgConn().PID()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		err := observer.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted AND relation = 'public.r'::regclass)`, pid).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the chunk never waited for the rewrite's lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := rewriter.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-out:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.rows != 500 || !r.done {
			t.Fatalf("the chunk after the rewrite read %d rows (done %v), want all 500", r.rows, r.done)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the chunk did not finish after the rewrite committed")
	}
}
