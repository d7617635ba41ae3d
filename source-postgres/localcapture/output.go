// Package localcapture is where a capture run by a person from a shell
// (`source-postgres capture`), rather than by a Flow runtime, puts what it
// captures: documents as JSON lines, each checkpoint into a state file that
// is its acknowledgement, and backfill progress for a terminal.
package localcapture

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"pgcapture/sqlcapture"
)

// Output prints documents and persists checkpoints to a state file.
type Output struct {
	w        *bufio.Writer
	state    sqlcapture.State
	path     string
	acks     *sqlcapture.Acknowledgements
	progress *Progress
}

var _ sqlcapture.Output = (*Output)(nil)

// NewOutput writes documents to w and, at each checkpoint, the state
// (state with the checkpoint applied) to the file at statePath, and then
// acknowledges the checkpoint on acks. An empty statePath keeps the state
// in memory only; a non-nil progress is told of each checkpoint's state.
func NewOutput(w io.Writer, statePath string, state sqlcapture.State, acks *sqlcapture.Acknowledgements, progress *Progress) *Output {
	return &Output{w: bufio.NewWriterSize(w, 1<<20), state: state, path: statePath, acks: acks, progress: progress}
}

// Captured implements sqlcapture.Output.
func (o *Output) Captured(_ uint32, doc []byte) error {
	o.w.Write(doc) //nolint:errcheck // bufio.Writer keeps the error and WriteByte returns it
	return o.w.WriteByte('\n')
}

// SourcedSchema implements sqlcapture.Output. It prints nothing: the output
// carries only documents.
func (o *Output) SourcedSchema(uint32, []byte) error { return nil }

// Checkpoint implements sqlcapture.Output. It makes the documents durable
// (written out) before the state that covers them, so a crash between the
// two repeats documents rather than losing them.
func (o *Output) Checkpoint(patch []byte) error {
	if err := o.w.Flush(); err != nil {
		return fmt.Errorf("writing documents: %w", err)
	}
	if err := o.state.Apply(patch); err != nil {
		return err
	}
	if o.progress != nil {
		o.progress.update(o.state)
	}
	if o.path != "" {
		raw, err := json.Marshal(o.state)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(o.path, raw); err != nil {
			return fmt.Errorf("writing the state file: %w", err)
		}
	}
	o.acks.Add(1)
	return nil
}

// Flush writes out the documents captured since the last checkpoint.
func (o *Output) Flush() error { return o.w.Flush() }

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content: write a temporary file, sync it, rename it over
// path, and sync the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close() //nolint:errcheck // the write's error is the one returned
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close() //nolint:errcheck // the write's error is the one returned
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
