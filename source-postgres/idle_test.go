package main

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// TestIdleCaptureReleasesWAL leaves a capture idle (nothing it captures
// changes) while another database of the same cluster writes tens of
// megabytes of WAL. A slot that only moved on captured commits would hold
// all of it; the capture's slot must instead come within 1 MB of the
// server's WAL position, in bounded time, as its idle checkpoints are
// acknowledged.
func TestIdleCaptureReleasesWAL(t *testing.T) {
	const (
		walToWrite = 24 << 20
		maxLag     = 1 << 20
		bound      = 45 * time.Second
	)
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.idle (id int PRIMARY KEY)`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "idle", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the empty table backfilled", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "idle"}, 0)) == "Active"
	})

	other := f.pg.NewDatabase(t)
	busy := f.pg.Connect(t, other)
	if _, err := busy.Exec(context.Background(), `CREATE TABLE busy (id int, pad text)`); err != nil {
		t.Fatal(err)
	}
	start := f.walLSN(t, "pg_current_wal_lsn()")
	for f.walLSN(t, "pg_current_wal_lsn()")-start < walToWrite {
		// About 4 MB of WAL per statement, in transactions of their own.
		if _, err := busy.Exec(context.Background(), `INSERT INTO busy SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 4000) g`); err != nil {
			t.Fatal(err)
		}
	}
	written := time.Now()
	end := f.walLSN(t, "pg_current_wal_lsn()")
	t.Logf("the other database wrote %.1f MB of WAL", float64(end-start)/(1<<20))

	var lag pglogrepl.LSN
	waitUntil(t, bound, "the idle slot to come within 1 MB of pg_current_wal_lsn()", func() bool {
		confirmed := f.confirmedFlush(t)
		current := f.walLSN(t, "pg_current_wal_lsn()")
		lag = current - min(confirmed, current)
		return lag < maxLag
	})
	t.Logf("the slot followed within %v (lag %d bytes)", time.Since(written).Round(time.Millisecond), lag)
	if n := len(s.Docs()); n != 0 {
		t.Errorf("the idle capture emitted %d documents", n)
	}
}
