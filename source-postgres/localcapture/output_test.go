package localcapture

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"pgcapture/sqlcapture"
)

// A checkpoint writes out the documents before it, then the state file
// holding every checkpoint so far, and leaves no temporary file behind.
func TestOutputCheckpoints(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	var docs bytes.Buffer
	resumed := sqlcapture.State{Cursor: "0/10", Streams: map[string]*sqlcapture.StreamState{
		"public%2Fa": {Mode: sqlcapture.ModeActive},
	}}
	out := NewOutput(&docs, path, resumed, sqlcapture.NewAcknowledgements(), nil)

	for i, step := range []struct {
		docs  []string
		patch string
		want  string // the state file afterwards
	}{{
		docs:  []string{`{"id":1}`, `{"id":2}`},
		patch: `{"cursor":"0/20","streams":{"public%2Fb":{"mode":"Backfill","backfilled":2}}}`,
		want:  `{"cursor":"0/20","streams":{"public%2Fa":{"mode":"Active"},"public%2Fb":{"mode":"Backfill","backfilled":2}}}`,
	}, {
		docs:  []string{`{"id":3}`},
		patch: `{"cursor":"0/30","streams":{"public%2Fa":null}}`,
		want:  `{"cursor":"0/30","streams":{"public%2Fb":{"mode":"Backfill","backfilled":2}}}`,
	}} {
		before := docs.Len()
		for _, d := range step.docs {
			if err := out.Captured(0, []byte(d)); err != nil {
				t.Fatal(err)
			}
		}
		if err := out.Checkpoint([]byte(step.patch)); err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		var lines string
		for _, d := range step.docs {
			lines += d + "\n"
		}
		if got := docs.String()[before:]; got != lines {
			t.Errorf("checkpoint %d: written before it %q, want %q", i, got, lines)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sqlcapture.ParseState(raw)
		if err != nil {
			t.Fatal(err)
		}
		want, err := sqlcapture.ParseState([]byte(step.want))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("checkpoint %d: the state file holds %s, want %s", i, raw, step.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %v, want the state file alone", entries)
	}
}
