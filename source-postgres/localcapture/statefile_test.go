package localcapture

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pgcapture/sqlcapture"
)

// A run killed with checkpoints still waiting leaves documents past the
// state file's mark; the next run writing to the same file cuts them off
// before it writes, and leaves any other file alone.
func TestCutBackToTheStateFile(t *testing.T) {
	dir := t.TempDir()
	docsPath, statePath := filepath.Join(dir, "docs.jsonl"), filepath.Join(dir, "state.json")
	open := func(t *testing.T, path string) *os.File {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() }) //nolint:errcheck // the test has read what it needs
		return f
	}
	write := func(t *testing.T, out *Output, doc, cursor string) {
		if err := out.Captured(0, []byte(doc)); err != nil {
			t.Fatal(err)
		}
		if err := out.Checkpoint([]byte(`{"cursor":"` + cursor + `"}`)); err != nil {
			t.Fatal(err)
		}
	}

	// An earlier run's documents, which the state covers.
	const earlier = `{"id":0}` + "\n"
	if err := os.WriteFile(docsPath, []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	// A run: its first checkpoint, before it wrote anything, is written
	// at once, the next ones wait, and the run is killed (never closed).
	first := NewOutput(open(t, docsPath), sqlcapture.State{}, sqlcapture.NewAcknowledgements(), OutputOptions{StatePath: statePath, StateInterval: 1 << 62})
	if err := first.Checkpoint([]byte(`{"cursor":"0/5"}`)); err != nil {
		t.Fatal(err)
	}
	write(t, first, `{"id":1}`, "0/10")
	write(t, first, `{"id":2}`, "0/20")

	state, mark, err := ReadStateFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if state.Cursor != "0/5" || mark == nil || mark.Offset != int64(len(earlier)) {
		t.Fatalf("the state file holds cursor %q and mark %+v, want 0/5 and the end of the earlier run's documents (%d)", state.Cursor, mark, len(earlier))
	}

	// Another file is left alone.
	otherPath := filepath.Join(dir, "other.jsonl")
	if err := os.WriteFile(otherPath, []byte("{\"id\":9}\n{\"id\":10}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := NewOutput(open(t, otherPath), state, sqlcapture.NewAcknowledgements(), OutputOptions{StatePath: statePath})
	if cut, err := other.CutBack(mark); err != nil || cut != 0 {
		t.Errorf("another file: cut %d bytes (%v), want none", cut, err)
	}

	// The next run on the same file cuts the killed run's documents off,
	// then writes after the earlier ones.
	second := NewOutput(open(t, docsPath), state, sqlcapture.NewAcknowledgements(), OutputOptions{StatePath: statePath, StateInterval: -1})
	cut, err := second.CutBack(mark)
	if err != nil {
		t.Fatal(err)
	}
	if cut != int64(len(`{"id":1}`+"\n"+`{"id":2}`+"\n")) {
		t.Errorf("cut %d bytes, want the killed run's two documents", cut)
	}
	write(t, second, `{"id":3}`, "0/30")
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(raw), earlier+"{\"id\":3}\n"; got != want {
		t.Errorf("the file holds %q, want %q", got, want)
	}
	if _, mark, _ := ReadStateFile(statePath); mark == nil || mark.Offset != int64(len(raw)) {
		t.Errorf("the state file's mark is %+v, want the file's end (%d)", mark, len(raw))
	}
}

// A state file is the runtime's state plus the mark; one without a mark
// (a pipe's, or from before marks) reads as before, and a damaged one is
// named.
func TestReadStateFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, cursor, err string
		mark                       bool
	}{
		{name: "missing"},
		{name: "no mark", content: `{"cursor":"0/10"}`, cursor: "0/10"},
		{name: "mark", content: `{"cursor":"0/10","output":{"device":1,"inode":2,"offset":3}}`, cursor: "0/10", mark: true},
		{name: "unknown field", content: `{"cursor":"0/10","other":1}`, err: "unknown field"},
		{name: "not JSON", content: `{"cursor":`, err: "state file"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
		if tc.content != "" {
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		state, mark, err := ReadStateFile(path)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case state.Cursor != tc.cursor || (mark != nil) != tc.mark:
			t.Errorf("%s: cursor %q, mark %+v", tc.name, state.Cursor, mark)
		}
	}
}
