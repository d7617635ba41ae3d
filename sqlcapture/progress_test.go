package sqlcapture

import (
	"testing"
	"time"
)

func TestProgressLag(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		p      Progress
		bytes  uint64
		behind time.Duration
	}{
		{"nothing known", Progress{}, 0, 0},
		{"behind", Progress{SourceEnd: 900, Emitted: 400, LastCommit: now.Add(-2 * time.Second)}, 500, 2 * time.Second},
		// An idle source is nothing to catch up with, however old its last commit.
		{"caught up", Progress{SourceEnd: 900, Emitted: 900, LastCommit: now.Add(-time.Hour)}, 0, 0},
		{"behind before any commit", Progress{SourceEnd: 900, Emitted: 400}, 500, 0},
		{"a clock ahead of ours", Progress{SourceEnd: 900, Emitted: 400, LastCommit: now.Add(time.Second)}, 500, 0},
	} {
		if got := tc.p.BytesBehind(); got != tc.bytes {
			t.Errorf("%s: BytesBehind() = %d, want %d", tc.name, got, tc.bytes)
		}
		if got := tc.p.Behind(now); got != tc.behind {
			t.Errorf("%s: Behind() = %s, want %s", tc.name, got, tc.behind)
		}
	}
}

func TestBackfillRemaining(t *testing.T) {
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		b    BackfillProgress
		at   time.Duration
		want time.Duration
		ok   bool
	}{
		{"half way", BackfillProgress{Rows: 600, EstimatedRows: 1100, Since: since, SinceRows: 100}, 5 * time.Second, 5 * time.Second, true},
		{"no estimate", BackfillProgress{Rows: 600, Since: since}, time.Second, 0, false},
		{"past the estimate", BackfillProgress{Rows: 600, EstimatedRows: 500, Since: since}, time.Second, 0, false},
		{"no rows yet", BackfillProgress{Rows: 100, EstimatedRows: 500, Since: since, SinceRows: 100}, time.Second, 0, false},
	} {
		got, ok := tc.b.Remaining(since.Add(tc.at))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: Remaining() = %s, %t, want %s, %t", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
