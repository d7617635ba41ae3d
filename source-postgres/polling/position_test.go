package polling

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePositions(t *testing.T) {
	full := map[string]*Position{"k": {Seq: 3, StartMillis: 1700000000000, Cursor: []string{"2024-01-01 00:00:00+00"}, CursorColumns: []string{"updated_at"}, Horizon: 4294967301}}
	for _, tc := range []struct {
		cursor string
		want   map[string]*Position
		ours   bool
		err    string
	}{
		{cursor: "", want: map[string]*Position{}, ours: true},
		{cursor: "0/1A2B3C4", want: map[string]*Position{}, ours: false},
		{cursor: encodePositions(full), want: full, ours: true},
		{cursor: `{"polls":null}`, want: map[string]*Position{}, ours: true},
		{cursor: `{"polls":{"k":{"seq":"three"}}}`, err: "the checkpointed poll positions"},
	} {
		got, ours, err := parsePositions(tc.cursor)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parsePositions(%q) error %v, want %q", tc.cursor, err, tc.err)
			}
			continue
		}
		if err != nil || ours != tc.ours || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parsePositions(%q) = %v, %t, %v; want %v, %t", tc.cursor, got, ours, err, tc.want, tc.ours)
		}
	}
}
