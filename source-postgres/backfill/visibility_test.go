package backfill

import (
	"math"
	"slices"
	"testing"
)

func TestParseSnapshot(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want snapshot
	}{
		{"10:20:", snapshot{xmin: 10, xmax: 20}},
		{"10:10:", snapshot{xmin: 10, xmax: 10}},
		{"10:20:12", snapshot{xmin: 10, xmax: 20, xip: []uint32{12}}},
		{"10:20:12,15,19", snapshot{xmin: 10, xmax: 20, xip: []uint32{12, 15, 19}}},
		// 64-bit ids carry the epoch in their upper half; visibility is
		// decided on the 32-bit ids the replication stream carries.
		{"4294967306:4294967316:4294967310", snapshot{xmin: 10, xmax: 20, xip: []uint32{14}}},
		// A snapshot straddling an epoch boundary.
		{"4294967290:4294967300:4294967295,4294967298", snapshot{xmin: math.MaxUint32 - 5, xmax: 4, xip: []uint32{math.MaxUint32, 2}}},
		{"18446744073709551615:18446744073709551615:", snapshot{xmin: math.MaxUint32, xmax: math.MaxUint32}},
	} {
		got, err := parseSnapshot(tc.in)
		if err != nil {
			t.Errorf("parseSnapshot(%q): %v", tc.in, err)
			continue
		}
		if got.xmin != tc.want.xmin || got.xmax != tc.want.xmax || !slices.Equal(got.xip, tc.want.xip) {
			t.Errorf("parseSnapshot(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}

	for _, bad := range []string{"", "10", "10:20", "10:20:12:", "a:20:", "10:b:", "10:20:x", "10:20:12,", "10:20:,12", "-1:20:", "10:20: 12", "18446744073709551616:1:"} {
		if got, err := parseSnapshot(bad); err == nil {
			t.Errorf("parseSnapshot(%q) = %+v, want an error", bad, got)
		}
	}
}

func TestSnapshotInProgress(t *testing.T) {
	for _, tc := range []struct {
		name      string
		snap      snapshot
		visible   []uint32
		invisible []uint32
	}{
		{
			name:      "plain",
			snap:      snapshot{xmin: 100, xmax: 110, xip: []uint32{100, 105}},
			visible:   []uint32{3, 99, 101, 104, 106, 109},
			invisible: []uint32{100, 105, 110, 111, 1 << 20},
		},
		{
			name:      "no transactions in progress",
			snap:      snapshot{xmin: 100, xmax: 100},
			visible:   []uint32{99, 1},
			invisible: []uint32{100, 101},
		},
		{
			// xmin just below the 32-bit wraparound, xmax past it: ids
			// compare modulo 2^32, as PostgreSQL compares them.
			name:      "wraparound",
			snap:      snapshot{xmin: math.MaxUint32 - 5, xmax: 4, xip: []uint32{math.MaxUint32 - 2, 1}},
			visible:   []uint32{math.MaxUint32 - 6, math.MaxUint32 - 5, math.MaxUint32, 0, 2, 3, 1 << 31},
			invisible: []uint32{math.MaxUint32 - 2, 1, 4, 5, 1000},
		},
	} {
		for _, xid := range tc.visible {
			if tc.snap.inProgress(xid) {
				t.Errorf("%s: %+v sees transaction %d as in progress, want visible", tc.name, tc.snap, xid)
			}
		}
		for _, xid := range tc.invisible {
			if !tc.snap.inProgress(xid) {
				t.Errorf("%s: %+v sees transaction %d as visible, want in progress", tc.name, tc.snap, xid)
			}
		}
	}
}

func TestCommittedXIDs(t *testing.T) {
	t.Run("finds an invisible transaction", func(t *testing.T) {
		c := NewCommittedXIDs()
		for _, xid := range []uint32{90, 95, 101, 107} {
			c.Committed(xid)
		}
		if xid, ok := c.invisibleIn(snapshot{xmin: 100, xmax: 110, xip: []uint32{104, 107}}); !ok || xid != 107 {
			t.Errorf("invisibleIn = %d, %t; want 107, true", xid, ok)
		}
		if xid, ok := c.invisibleIn(snapshot{xmin: 100, xmax: 110, xip: []uint32{104}}); ok {
			t.Errorf("invisibleIn = %d, true; want every delivered transaction visible", xid)
		}
		if xid, ok := c.invisibleIn(snapshot{xmin: 100, xmax: 105}); !ok || xid != 107 {
			t.Errorf("invisibleIn with xmax 105 = %d, %t; want 107, true (not yet started for the snapshot)", xid, ok)
		}
	})

	t.Run("prunes what every later snapshot sees", func(t *testing.T) {
		c := NewCommittedXIDs()
		for _, xid := range []uint32{90, 95, 101, 107} {
			c.Committed(xid)
		}
		c.invisibleIn(snapshot{xmin: 100, xmax: 110})
		if !slices.Equal(c.xids, []uint32{101, 107}) {
			t.Errorf("after a snapshot with xmin 100, remembered %v, want [101 107]", c.xids)
		}
		// Pruning compares modulo 2^32 too.
		c = NewCommittedXIDs()
		for _, xid := range []uint32{math.MaxUint32 - 3, math.MaxUint32, 2} {
			c.Committed(xid)
		}
		if xid, ok := c.invisibleIn(snapshot{xmin: math.MaxUint32 - 1, xmax: 3, xip: []uint32{2}}); !ok || xid != 2 {
			t.Errorf("invisibleIn across wraparound = %d, %t; want 2, true", xid, ok)
		}
		if !slices.Equal(c.xids, []uint32{math.MaxUint32, 2}) {
			t.Errorf("after a snapshot with xmin 2^32-2, remembered %v, want [%d 2]", c.xids, uint32(math.MaxUint32))
		}
	})

	t.Run("stays bounded", func(t *testing.T) {
		c := NewCommittedXIDs()
		const n = 3*recentXIDs + 7
		for i := range uint32(n) {
			c.Committed(i)
			if len(c.xids) > recentXIDs {
				t.Fatalf("after %d transactions, %d are remembered, more than the bound %d", i+1, len(c.xids), recentXIDs)
			}
		}
		if last := c.xids[len(c.xids)-1]; last != n-1 {
			t.Errorf("the newest transaction %d was forgotten (newest remembered: %d)", n-1, last)
		}
		if len(c.xids) < recentXIDs/2 {
			t.Errorf("only %d transactions remembered; the newest half of the bound should be kept", len(c.xids))
		}
		if xid, ok := c.invisibleIn(snapshot{xmin: n - 1, xmax: n - 1}); !ok || xid != n-1 {
			t.Errorf("invisibleIn = %d, %t; want the newest transaction %d in progress", xid, ok, n-1)
		}
	})
}
