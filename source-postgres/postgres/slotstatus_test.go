package postgres

import (
	"strings"
	"testing"
)

// TestExplainInvalidation checks that each reason PostgreSQL 17 and 18 give
// for invalidating a slot, and the 'lost' of earlier majors, is explained
// with the setting or cause behind it, and that an unknown one is quoted.
func TestExplainInvalidation(t *testing.T) {
	for _, tc := range []struct {
		reason string
		want   []string
	}{
		{"", nil},
		{"wal_removed", []string{"max_slot_wal_keep_size", "raise"}},
		{"rows_removed", []string{"hot_standby_feedback"}},
		{"wal_level_insufficient", []string{"wal_level"}},
		{"idle_timeout", []string{"idle_timeout", "raise idle_replication_slot_timeout"}},
		{"lost", []string{"wal_status 'lost'", "max_slot_wal_keep_size"}},
		{"something_new", []string{`invalidation_reason "something_new"`}},
	} {
		got := explainInvalidation(tc.reason)
		if (got == "") != (tc.want == nil) {
			t.Errorf("explainInvalidation(%q) = %q", tc.reason, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("explainInvalidation(%q) = %q, want it to mention %q", tc.reason, got, w)
			}
		}
	}
}
