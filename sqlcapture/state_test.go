package sqlcapture

import "testing"

func TestStateStarted(t *testing.T) {
	for _, tc := range []struct {
		state string
		want  bool
	}{
		{`{}`, false},
		{`{"streams":{"public%2Ft":{"mode":"Backfill","key_columns":["id"],"scanned":null,"backfilled":0}}}`, false},
		{`{"cursor":"0/10","streams":{"public%2Ft":{"mode":"Backfill","scanned":null,"backfilled":0}}}`, true},
		{`{"streams":{"public%2Ft":{"mode":"Backfill","scanned":"AQ==","backfilled":1}}}`, true},
		{`{"streams":{"public%2Ft":{"mode":"Backfill","scanned":null,"backfilled":0,"ranges":[{"end":"AQ==","scanned":null,"done":false},{"end":null,"scanned":null,"done":false}]}}}`, true},
		{`{"streams":{"public%2Ft":{"mode":"Backfill","scanned":null,"backfilled":0},"public%2Fu":{"mode":"Active","scanned":null,"backfilled":0}}}`, true},
	} {
		st, err := ParseState([]byte(tc.state))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Started(); got != tc.want {
			t.Errorf("%s: Started() = %v, want %v", tc.state, got, tc.want)
		}
	}
}
