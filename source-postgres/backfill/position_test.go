package backfill

import (
	"bytes"
	"context"
	"testing"

	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// The position a keyed chunk returns must outlive the scanner's next chunk.
// The engine keeps a round's positions until the round's fence, and after a
// cut connection it reads the failed chunks of the round on the connection
// whose chunk already succeeded: a position that aliased the scanner's key
// buffer then became the other range's last key, so a range was recorded as
// read up to another range's rows and its own rows were never backfilled.
func TestChunkPositionOutlivesTheNextChunk(t *testing.T) {
	ctx := context.Background()
	pg := testsupport.StartPostgres(t, testsupport.Options{})
	db := pg.NewDatabase(t)
	pg.Exec(t, db, `CREATE TABLE public.p (id integer PRIMARY KEY, v integer NOT NULL);
		INSERT INTO public.p SELECT g, g FROM generate_series(1, 100) g`)
	conn := connectAsCapture(t, pg, db)
	table := onlyTable(ctx, t, conn)
	scanner := quietScanner(conn)
	var lastKey []byte
	emit := func(r sqlcapture.Row) error { lastKey = append(lastKey[:0], r.Key...); return nil }

	// The first range's chunk: ids 1 to 10, up to the bound 50.
	until := sqlcapture.AppendKeyInt(nil, 50)
	first, done, err := scanner.ScanChunk(ctx, table, nil, until, 0, 10, emit)
	if err != nil || done {
		t.Fatalf("first chunk: done %v, %v", done, err)
	}
	want := bytes.Clone(lastKey)
	if !bytes.Equal(first, want) {
		t.Fatalf("the first chunk's position is not its last row's key")
	}
	// The second range's chunk on the same scanner: ids 51 to 60.
	if _, _, err := scanner.ScanChunk(ctx, table, until, nil, 10, 10, emit); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, want) {
		t.Errorf("the first chunk's position changed when the scanner read the next chunk: it would resume after another range's rows")
	}
}
