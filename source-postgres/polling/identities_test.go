package polling

import (
	"slices"
	"testing"
)

func TestIdentities(t *testing.T) {
	for _, tc := range []struct {
		prev, cur []string
		dups      int
		gone      []string
	}{
		{prev: nil, cur: []string{`"id":1`}, gone: nil},
		{prev: []string{`"id":1`, `"id":2`, `"id":3`}, cur: []string{`"id":3`, `"id":1`}, gone: []string{`"id":2`}},
		{prev: []string{`"id":2`, `"id":1`}, cur: nil, gone: []string{`"id":1`, `"id":2`}},
		{prev: []string{`"id":1`}, cur: []string{`"id":1`, `"id":1`, `"id":10`}, dups: 1},
		// A prefix is a different identity.
		{prev: []string{`"id":1`, `"id":10`}, cur: []string{`"id":10`}, gone: []string{`"id":1`}},
	} {
		var prev, cur identities
		for _, id := range tc.prev {
			prev.add([]byte(id))
		}
		for _, id := range tc.cur {
			cur.add([]byte(id))
		}
		prev.sort()
		if dups := cur.sort(); dups != tc.dups {
			t.Errorf("%q: %d duplicates, want %d", tc.cur, dups, tc.dups)
		}
		for _, id := range tc.cur {
			if !cur.contains([]byte(id)) {
				t.Errorf("%q does not contain %s", tc.cur, id)
			}
		}
		if cur.contains([]byte(`"id":99`)) {
			t.Errorf("%q contains an identity never added", tc.cur)
		}
		var gone []string
		if err := prev.missingFrom(&cur, func(id []byte) error { gone = append(gone, string(id)); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gone, tc.gone) {
			t.Errorf("%q → %q: gone %q, want %q", tc.prev, tc.cur, gone, tc.gone)
		}
	}
}
