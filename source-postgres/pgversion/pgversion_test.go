package pgversion

import (
	"strings"
	"testing"
)

// Servers older than 13 cannot be run here; the rule is checked on its own.
func TestUnsupported(t *testing.T) {
	for _, tc := range []struct {
		s  Server
		ok bool
	}{
		{Server{120015, "12.15"}, false},
		{Server{90624, "9.6.24"}, false},
		{Server{130000, "13.0"}, true},
		{Server{170002, "17.2 (Debian 17.2-1)"}, true},
	} {
		why := tc.s.Unsupported()
		if tc.ok != (why == "") || tc.ok != tc.s.Supported() {
			t.Errorf("PostgreSQL %s: Unsupported() = %q", tc.s.Version, why)
		}
		if !tc.ok && (!strings.Contains(why, "PostgreSQL "+tc.s.Version+" is not supported") || !strings.Contains(why, "PostgreSQL 13 or later")) {
			t.Errorf("PostgreSQL %s: %q names neither the version found nor the minimum", tc.s.Version, why)
		}
	}
}

func TestHas(t *testing.T) {
	for _, tc := range []struct {
		f     Feature
		major int // the first major with f
	}{
		{SlotTwoPhase, 14},
		{Multiranges, 14},
		{NumericInfinity, 14},
		{StreamingInProgress, 14},
		{PublicationRowFilters, 15},
		{PublicationColumnLists, 15},
		{PublicationSchemas, 15},
		{DatabaseLocaleProvider, 15},
		{NumericNegativeScale, 15},
		{PublicationTablesViewLocks, 16},
		{SlotConflicting, 16},
		{LogicalDecodingOnStandby, 16},
		{SlotInvalidationReason, 17},
		{SlotFailover, 17},
		{SlotSynced, 17},
		{PublicationGeneratedColumns, 18},
		{SlotIdleTimeout, 18},
	} {
		before := Server{Num: (tc.major-1)*10000 + 99}
		first := Server{Num: tc.major * 10000}
		if before.Has(tc.f) || !first.Has(tc.f) {
			t.Errorf("feature %d: Has on %d, %d = %v, %v; want false, true", tc.f, before.Num, first.Num, before.Has(tc.f), first.Has(tc.f))
		}
		if first.Major() != tc.major {
			t.Errorf("Major() of %d = %d", first.Num, first.Major())
		}
	}
}
