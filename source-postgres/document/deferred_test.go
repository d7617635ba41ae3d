package document

import (
	"testing"
)

// TestCompleteChange: a document built with a placeholder source and
// completed equals one built with the whole source, whatever the table's
// names hold.
func TestCompleteChange(t *testing.T) {
	full := Source{PrevCommitEnd: 1234, LSN: 56789, CommitLSN: 99999, CommitTimeMillis: 1700000000123, TxID: 4242}
	for _, tc := range []struct{ schema, table, tag string }{
		{"public", "users", ""},
		{"odd", `x","loc":[0,1,0],"ts_ms":0,"txid":`, "tag"},
		{"s", "t", `,"loc":[0,`},
	} {
		tbl := NewTable(tc.schema, tc.table, tc.tag)
		want := End(append(EndMeta(tbl.BeginChange(nil, 'c', &full)), `"id":1`...))
		deferred := Source{LSN: full.LSN, TxID: full.TxID}
		built := End(append(EndMeta(tbl.BeginChange(nil, 'c', &deferred)), `"id":1`...))
		got, err := CompleteChange([]byte("prefix"), built, &full)
		if err != nil {
			t.Fatalf("%s.%s: %v", tc.schema, tc.table, err)
		}
		if string(got) != "prefix"+string(want) {
			t.Errorf("%s.%s:\n got %s\nwant %s", tc.schema, tc.table, got, want)
		}
	}
	if _, err := CompleteChange(nil, []byte(`{"_meta":{}}`), &full); err == nil {
		t.Error("a document without a placeholder was completed")
	}
}
