package localcapture

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

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
	out := NewOutput(&docs, resumed, sqlcapture.NewAcknowledgements(), OutputOptions{StatePath: path, StateInterval: -1})

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

// stateCursor reads the cursor of the state file at path.
func stateCursor(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlcapture.ParseState(raw)
	if err != nil {
		t.Fatal(err)
	}
	return st.Cursor
}

func cursorPatch(lsn string) []byte {
	return []byte(`{"cursor":"` + lsn + `"}`)
}

// Checkpoints that follow each other closely are written to the state file
// together: the first at once, the next ones when the interval has passed
// (by the timer, with no further checkpoint needed) or at Close.
func TestOutputWritesCheckpointsTogether(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		close    bool // Close, rather than the timer, writes the waiting ones
	}{
		{name: "the timer writes them", interval: 50 * time.Millisecond},
		{name: "Close writes them", interval: time.Hour, close: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			var docs bytes.Buffer
			out := NewOutput(&docs, sqlcapture.State{}, sqlcapture.NewAcknowledgements(), OutputOptions{StatePath: path, StateInterval: tc.interval})
			for _, lsn := range []string{"0/10", "0/20", "0/30"} {
				if err := out.Captured(0, []byte(`{"lsn":"`+lsn+`"}`)); err != nil {
					t.Fatal(err)
				}
				if err := out.Checkpoint(cursorPatch(lsn)); err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Count(docs.String(), "\n"); got != 3 {
				t.Errorf("%d documents were written out by the last checkpoint, want 3 (documents never wait)", got)
			}
			if got := stateCursor(t, path); got != "0/10" {
				t.Fatalf("the state file holds cursor %s right after three checkpoints, want the first one's (0/10)", got)
			}
			if tc.close {
				if err := out.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				for deadline := time.Now().Add(10 * time.Second); stateCursor(t, path) != "0/30" && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
			}
			if got := stateCursor(t, path); got != "0/30" {
				t.Errorf("the state file holds cursor %s, want the last checkpoint's (0/30)", got)
			}
		})
	}
}

// A state write that fails on the timer stops the capture at its next
// checkpoint, naming the state file.
func TestOutputReportsAFailedWaitingWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var docs bytes.Buffer
	out := NewOutput(&docs, sqlcapture.State{}, sqlcapture.NewAcknowledgements(), OutputOptions{StatePath: filepath.Join(dir, "state.json"), StateInterval: 20 * time.Millisecond})
	if err := out.Checkpoint(cursorPatch("0/10")); err != nil {
		t.Fatal(err)
	}
	if err := out.Checkpoint(cursorPatch("0/20")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		err = out.Checkpoint(cursorPatch("0/30"))
	}
	if err == nil || !strings.Contains(err.Error(), "writing the state file") {
		t.Fatalf("checkpoints after a failed state write returned %v, want the failure", err)
	}
	if cerr := out.Close(); cerr == nil {
		t.Error("Close returned no error after a failed state write")
	}
}

// Only a regular file of documents is synced before a state write: a pipe
// or terminal has nothing to sync, and a capture without a state file
// keeps nothing.
func TestOutputSyncsRegularDocumentFiles(t *testing.T) {
	dir := t.TempDir()
	file, err := os.Create(filepath.Join(dir, "docs.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	state := filepath.Join(dir, "state.json")
	for _, tc := range []struct {
		name     string
		docs     *os.File
		state    string
		wantSync bool
	}{
		{"a regular file", file, state, true},
		{"a pipe", w, state, false},
		{"a regular file, no state file", file, "", false},
	} {
		out := NewOutput(tc.docs, sqlcapture.State{}, sqlcapture.NewAcknowledgements(), OutputOptions{StatePath: tc.state})
		if got := out.docs != nil; got != tc.wantSync {
			t.Errorf("%s: synced %v, want %v", tc.name, got, tc.wantSync)
		}
	}
}

// writeRecorder records the size and last byte of every write.
type writeRecorder struct {
	writes []string // each write's last byte and length
	all    bytes.Buffer
}

func (r *writeRecorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, fmt.Sprintf("%d bytes ending %q", len(p), p[len(p)-1]))
	if p[len(p)-1] != '\n' {
		r.writes[len(r.writes)-1] += " (a half line)"
	}
	return r.all.Write(p)
}

// Documents reach the file in writes of whole lines, however their sizes
// fall against the buffer's, so that a kill never leaves half a line.
func TestOutputWritesWholeLines(t *testing.T) {
	var rec writeRecorder
	out := NewOutput(&rec, sqlcapture.State{}, sqlcapture.NewAcknowledgements(), OutputOptions{})
	var want bytes.Buffer
	for i, size := range []int{300 << 10, 300 << 10, 300 << 10, 300 << 10, 3 << 20, 10, 1<<20 - 1, 1 << 20, 20} {
		doc := bytes.Repeat([]byte{'a' + byte(i)}, size)
		if err := out.Captured(0, doc); err != nil {
			t.Fatal(err)
		}
		want.Write(doc)
		want.WriteByte('\n')
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.all.Bytes(), want.Bytes()) {
		t.Fatalf("wrote %d bytes, want the %d of the documents in order", rec.all.Len(), want.Len())
	}
	for _, w := range rec.writes {
		if strings.HasSuffix(w, "(a half line)") {
			t.Errorf("writes: %v", rec.writes)
			break
		}
	}
}
