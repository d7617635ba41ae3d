package localcapture

import (
	"bytes"
	"testing"
	"time"

	"pgcapture/sqlcapture"
)

func TestFormatDone(t *testing.T) {
	for _, tc := range []struct {
		rows, recent int64
		elapsed      time.Duration
		want         string
	}{
		{1234567, 1234567, 250 * time.Second, "backfilled public.users: 1,234,567 rows in 4m10s, 4,938 rows/s"},
		{5, 5, 1234 * time.Microsecond, "backfilled public.users: 5 rows in 0s, 4,051 rows/s"},
		{0, 0, 0, "backfilled public.users: 0 rows in 0s"},
	} {
		if got := formatDone("public.users", tc.rows, tc.recent, tc.elapsed); got != tc.want {
			t.Errorf("formatDone(%d, %d, %s) = %q, want %q", tc.rows, tc.recent, tc.elapsed, got, tc.want)
		}
	}
}

func TestFormatBackfill(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	users := sqlcapture.StreamID{Schema: "public", Table: "users"}
	for _, tc := range []struct {
		b       sqlcapture.BackfillProgress
		elapsed time.Duration
		want    string
	}{
		// 1,000 rows/s since the start, 8,000 rows left.
		{sqlcapture.BackfillProgress{Stream: users, Rows: 12000, EstimatedRows: 20000, Since: start, SinceRows: 10000}, 2 * time.Second,
			"backfilling public.users: 12,000 of about 20,000 rows (60%), 1,000 rows/s, about 8s left"},
		// No estimate (a table never analyzed).
		{sqlcapture.BackfillProgress{Stream: users, Rows: 4096, Since: start}, 2 * time.Second,
			"backfilling public.users: 4,096 rows so far, 2,048 rows/s"},
		// Past the estimate: no percentage, no time left.
		{sqlcapture.BackfillProgress{Stream: users, Rows: 3000, EstimatedRows: 2500, Since: start}, 3 * time.Second,
			"backfilling public.users: 3,000 rows so far, 1,000 rows/s"},
		// Nothing read yet in this run: no rate, so no time left.
		{sqlcapture.BackfillProgress{Stream: users, Rows: 500, EstimatedRows: 1000, Since: start, SinceRows: 500}, time.Second,
			"backfilling public.users: 500 of about 1,000 rows (50%)"},
	} {
		if got := formatBackfill(tc.b, start.Add(tc.elapsed)); got != tc.want {
			t.Errorf("formatBackfill(%+v) = %q, want %q", tc.b, got, tc.want)
		}
	}
}

func TestFormatLag(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		p    sqlcapture.Progress
		want string
	}{
		{sqlcapture.Progress{}, "lag: not known yet (the server has not reported its WAL position)"},
		{sqlcapture.Progress{SourceEnd: 5000, Emitted: 5000, LastCommit: now.Add(-time.Hour)}, "lag: none, caught up with the server's WAL"},
		{sqlcapture.Progress{SourceEnd: 1239567, Emitted: 5000, LastCommit: now.Add(-3450 * time.Millisecond)},
			"lag: 1,234,567 bytes of WAL behind the server, the last emitted commit is 3.5s old"},
		{sqlcapture.Progress{SourceEnd: 6000, Emitted: 5000}, "lag: 1,000 bytes of WAL behind the server"},
	} {
		if got := formatLag(tc.p, now); got != tc.want {
			t.Errorf("formatLag(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

// The status lines: backfills and lag at each report, a caught-up capture
// only every lagHeartbeat, and a line when a backfill is done.
func TestProgressLines(t *testing.T) {
	var out bytes.Buffer
	names := map[string]string{"a": "public.a", "b": "public.b", "s": "public.skipped"}
	p := NewProgress(&out, names, sqlcapture.State{Streams: map[string]*sqlcapture.StreamState{
		"a": {Mode: sqlcapture.ModeBackfill, Backfilled: 1000},
	}}, []string{"public.skipped"})
	start := p.pending["b"].at // when the run began
	p.now = func() time.Time { return start.Add(3 * time.Second) }
	a := sqlcapture.StreamID{Schema: "public", Table: "a"}

	caughtUp := sqlcapture.Progress{SourceEnd: 100, Emitted: 100}
	p.ObserveProgress(start.Add(2*time.Second), sqlcapture.Progress{SourceEnd: 300, Emitted: 100, LastCommit: start.Add(time.Second),
		Backfills: []sqlcapture.BackfillProgress{{Stream: a, Rows: 1200, EstimatedRows: 2000, Since: start, SinceRows: 1000}}})
	p.update(sqlcapture.State{Streams: map[string]*sqlcapture.StreamState{
		"a": {Mode: sqlcapture.ModeActive, Backfilled: 1300},
		"b": {Mode: sqlcapture.ModeActive, Backfilled: 7},
		"s": {Mode: sqlcapture.ModeActive},
	}})
	p.ObserveProgress(start.Add(4*time.Second), caughtUp)  // caught up since behind: said once
	p.ObserveProgress(start.Add(6*time.Second), caughtUp)  // nothing new
	p.ObserveProgress(start.Add(34*time.Second), caughtUp) // the heartbeat
	want := "backfilling public.a: 1,200 of about 2,000 rows (60%), 100 rows/s, about 8s left\n" +
		"lag: 200 bytes of WAL behind the server, the last emitted commit is 1s old\n" +
		"backfilled public.a: 1,300 rows in 3s, 100 rows/s\n" +
		"backfilled public.b: 7 rows in 3s, 2 rows/s\n" +
		"lag: none, caught up with the server's WAL\n" +
		"lag: none, caught up with the server's WAL\n"
	if out.String() != want {
		t.Errorf("progress lines:\n%s\nwant:\n%s", out.String(), want)
	}
}
