package backfill

import (
	"context"
	"io"
	"slices"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// The benchmark table of bench/ in the repository root: about 100 bytes per
// row in PostgreSQL's text output.
const benchSetup = `
CREATE TABLE public.bench (
	id bigint PRIMARY KEY, n integer NOT NULL, s text NOT NULL,
	ts timestamptz NOT NULL, amount numeric(12,2) NOT NULL, doc jsonb);
INSERT INTO public.bench (id, n, s, ts, amount, doc)
SELECT g, (g * 7919) % 100000, substr(md5(g::text), 1, 24),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1234567 microseconds',
       round((g % 100000) * 1.37, 2), jsonb_build_object('k', g % 1000, 'tag', 'tag-' || g % 97)
FROM generate_series(1::bigint, 100000) g;`

const benchChunk = 4096

// BenchmarkBackfill measures a backfilled row becoming a document: alone
// (appendRow, on rows the server returned), and with the chunk's query and
// transaction around it (ScanChunk against a real server).
func BenchmarkBackfill(b *testing.B) {
	ctx := context.Background()
	pg := testsupport.StartPostgres(b, testsupport.Options{})
	db := pg.NewDatabase(b)
	pg.Exec(b, db, benchSetup)
	pg.Exec(b, db, "VACUUM (FREEZE, ANALYZE) public.bench")
	conn := connectAsCapture(b, pg, db)
	table := onlyTable(ctx, b, conn)

	b.Run("appendRow", func(b *testing.B) {
		// One chunk's values in text format, as ScanChunk receives them.
		rr := conn.PgConn().ExecParams(ctx, table.first+strconv.Itoa(benchChunk), nil, nil, nil, nil)
		var rows [][][]byte
		for rr.NextRow() {
			row := make([][]byte, len(rr.Values()))
			for i, v := range rr.Values() {
				row[i] = slices.Clone(v)
			}
			rows = append(rows, row)
		}
		if _, err := rr.Close(); err != nil {
			b.Fatal(err)
		}
		var doc, key []byte
		var err error
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if doc, key, err = table.appendRow(doc[:0], key[:0], rows[i%len(rows)], int64(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(doc)))
	})

	b.Run("ScanChunk", func(b *testing.B) {
		s := quietScanner(conn)
		var after []byte
		var offset, total int64
		b.ReportAllocs()
		for b.Loop() {
			next, done, err := s.ScanChunk(ctx, table, after, nil, offset, benchChunk, func(sqlcapture.Row) error { total++; return nil })
			if err != nil {
				b.Fatal(err)
			}
			offset = total
			after = slices.Clone(next)
			if done {
				after, offset = nil, 0
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total), "ns/row")
	})
}

// connectAsCapture opens a connection to db with the session settings the
// connector's query connection uses.
func connectAsCapture(tb testing.TB, pg *testsupport.Postgres, db string) *pgx.Conn {
	tb.Helper()
	return pg.ConnectWith(tb, db, pgtypes.SessionParams())
}

// onlyTable discovers the one table of conn's database and builds its chunk
// queries.
func onlyTable(ctx context.Context, tb testing.TB, conn *pgx.Conn) *Table {
	tb.Helper()
	types, err := pgtypes.LoadRegistry(ctx, conn)
	if err != nil {
		tb.Fatal(err)
	}
	tables, err := discovery.ListTables(ctx, conn, types, discovery.Options{})
	if err != nil || len(tables) != 1 {
		tb.Fatalf("discovered %d tables (%v), want 1", len(tables), err)
	}
	table, err := NewTable(tables[0], false, "")
	if err != nil {
		tb.Fatal(err)
	}
	return table
}

// quietScanner is a Scanner on conn that logs nothing.
func quietScanner(conn *pgx.Conn) *Scanner {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return NewScanner(conn.PgConn(), NewCommittedXIDs(), log)
}
