package localcapture

import (
	"bytes"
	"testing"
	"time"

	"pgcapture/sqlcapture"
)

func TestFormatProgress(t *testing.T) {
	for _, tc := range []struct {
		rows, recent int64
		elapsed      time.Duration
		done         bool
		want         string
	}{
		{12288, 8192, 2 * time.Second, false, "backfilling public.users: 12,288 rows so far, 4,096 rows/s"},
		{1234567, 1234567, 250 * time.Second, true, "backfilled public.users: 1,234,567 rows in 4m10s, 4,938 rows/s"},
		{5, 5, 1234 * time.Microsecond, true, "backfilled public.users: 5 rows in 0s, 4,051 rows/s"},
		{0, 0, 0, true, "backfilled public.users: 0 rows in 0s"},
		{999, 0, time.Second, false, "backfilling public.users: 999 rows so far"},
	} {
		if got := formatProgress("public.users", tc.rows, tc.recent, tc.elapsed, tc.done); got != tc.want {
			t.Errorf("formatProgress(%d, %d, %s, %t) = %q, want %q", tc.rows, tc.recent, tc.elapsed, tc.done, got, tc.want)
		}
	}
}

func TestBackfillProgress(t *testing.T) {
	var out bytes.Buffer
	names := map[string]string{"a": "public.a", "b": "public.b", "c": "public.c", "s": "public.skipped"}
	// a resumes a backfill at 1000 rows; b starts one; c is done.
	resumed := sqlcapture.State{Streams: map[string]*sqlcapture.StreamState{
		"a": {Mode: sqlcapture.ModeBackfill, Backfilled: 1000},
		"c": {Mode: sqlcapture.ModeActive, Backfilled: 7},
	}}
	p := NewProgress(&out, names, resumed, []string{"public.skipped"})
	start := p.printed
	at := func(d time.Duration, a, b int64, bDone bool) {
		p.now = func() time.Time { return start.Add(d) }
		st := sqlcapture.State{Streams: map[string]*sqlcapture.StreamState{
			"a": {Mode: sqlcapture.ModeBackfill, Backfilled: a},
			"b": {Mode: sqlcapture.ModeBackfill, Backfilled: b},
			"c": {Mode: sqlcapture.ModeActive, Backfilled: 7},
			"s": {Mode: sqlcapture.ModeActive},
		}}
		if bDone {
			st.Streams["b"].Mode = sqlcapture.ModeActive
		}
		p.update(st)
	}
	at(time.Second, 1100, 100, false)   // too soon for a line
	at(2*time.Second, 1200, 200, false) // a line per backfilling table
	at(3*time.Second, 1300, 250, true)  // b is done
	at(4*time.Second, 1400, 250, true)  // a again
	want := "backfilling public.a: 1,200 rows so far, 100 rows/s\n" +
		"backfilling public.b: 200 rows so far, 100 rows/s\n" +
		"backfilled public.b: 250 rows in 3s, 83 rows/s\n" +
		"backfilling public.a: 1,400 rows so far, 100 rows/s\n"
	if out.String() != want {
		t.Errorf("progress lines:\n%s\nwant:\n%s", out.String(), want)
	}
}
