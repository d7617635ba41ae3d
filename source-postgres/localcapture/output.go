// Package localcapture is where a capture run by a person from a shell
// (`source-postgres capture`), rather than by a Flow runtime, puts what it
// captures: documents as JSON lines, checkpoints into a state file that is
// their acknowledgement, and backfill progress for a terminal.
package localcapture

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"pgcapture/sqlcapture"
)

// DefaultStateInterval is how long checkpoints may wait to be written to
// the state file together. Writing it durably costs two fsyncs (and a
// third of the documents' file), a few milliseconds: at every checkpoint,
// a stream of small transactions would run at that pace. A crash repeats
// the documents of at most this long, never skips any.
const DefaultStateInterval = time.Second

// Output prints documents and persists checkpoints to a state file.
type Output struct {
	w *bufio.Writer
	// docs is the documents' file when it is a regular one (stdout
	// redirected to a file): it is synced before a state that covers its
	// documents is written, so that a power loss cannot leave a state
	// whose documents are gone. Pipes and terminals have nothing to sync.
	docs          *os.File
	device, inode uint64 // the documents' file's
	path          string
	interval      time.Duration
	acks          *sqlcapture.Acknowledgements
	progress      *Progress

	// mu guards the state and its writing, done by Checkpoint or, for
	// checkpoints left waiting, by a timer.
	mu      sync.Mutex
	state   sqlcapture.State
	pending uint32 // checkpoints applied since the state file was written
	written time.Time
	timer   *time.Timer
	err     error // a failed write of the timer's, returned by the next call
}

var _ sqlcapture.Output = (*Output)(nil)

// OutputOptions configure an Output.
type OutputOptions struct {
	// StatePath is the state file, written atomically with every
	// checkpoint so far; empty keeps the state in memory only.
	StatePath string
	// StateInterval lets checkpoints wait up to this long to be written
	// together (DefaultStateInterval if zero; negative writes each one).
	StateInterval time.Duration
	// Progress, if set, is told of each checkpoint's state.
	Progress *Progress
}

// NewOutput writes documents to w and checkpoints to the state file; a
// checkpoint is acknowledged on acks once the state file holds it. The
// state file starts as state.
func NewOutput(w io.Writer, state sqlcapture.State, acks *sqlcapture.Acknowledgements, opts OutputOptions) *Output {
	o := &Output{
		w: bufio.NewWriterSize(w, 1<<20), path: opts.StatePath, interval: opts.StateInterval,
		acks: acks, progress: opts.Progress, state: state,
	}
	if o.interval == 0 {
		o.interval = DefaultStateInterval
	}
	if f, ok := w.(*os.File); ok && opts.StatePath != "" {
		if info, err := f.Stat(); err == nil && info.Mode().IsRegular() {
			// The file position is where the state's mark is read: at
			// the end, even before this run's first write (an O_APPEND
			// file's position is 0 until then).
			if dev, ino, _, err := fileIdentity(f); err == nil {
				if _, err := f.Seek(0, io.SeekEnd); err == nil {
					o.docs, o.device, o.inode = f, dev, ino
				}
			}
		}
	}
	return o
}

// Captured implements sqlcapture.Output. Documents are written out whole
// lines at a time, so that a capture killed mid-write leaves no half line
// for the next run to append to (a write to a regular file is never cut
// short by a signal).
func (o *Output) Captured(_ uint32, doc []byte) error {
	if len(doc) >= o.w.Available() {
		if err := o.w.Flush(); err != nil {
			return err
		}
		if len(doc) >= o.w.Available() {
			// Larger than the buffer: one write of its own.
			_, err := o.w.Write(append(slices.Clip(doc), '\n'))
			if err == nil {
				err = o.w.Flush()
			}
			return err
		}
	}
	o.w.Write(doc) //nolint:errcheck // bufio.Writer keeps the error and WriteByte returns it
	return o.w.WriteByte('\n')
}

// SourcedSchema implements sqlcapture.Output. It prints nothing: the output
// carries only documents.
func (o *Output) SourcedSchema(uint32, []byte) error { return nil }

// Checkpoint implements sqlcapture.Output. It writes out the documents
// before it at once, so that a reader of the output sees them without
// delay, and the state file once StateInterval has passed since it was
// last written (or when the timer it sets fires): always after the
// documents it covers, so that a crash between the two repeats documents
// rather than losing them.
func (o *Output) Checkpoint(patch []byte) error {
	if err := o.w.Flush(); err != nil {
		return fmt.Errorf("writing documents: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if err := o.state.Apply(patch); err != nil {
		return err
	}
	if o.progress != nil {
		o.progress.update(o.state)
	}
	o.pending++
	if o.path == "" {
		// Nothing is kept, so there is nothing to wait for.
		o.acks.Add(o.pending)
		o.pending = 0
		return nil
	}
	wait := o.interval - time.Since(o.written)
	if o.interval < 0 || wait <= 0 {
		return o.writeState()
	}
	if o.timer == nil {
		o.timer = time.AfterFunc(wait, o.writeWaiting)
	}
	return nil
}

// writeWaiting writes the state of checkpoints left waiting.
func (o *Output) writeWaiting() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.timer = nil
	if o.pending > 0 && o.err == nil {
		o.err = o.writeState()
	}
}

// writeState makes the documents durable, writes the state file, and
// acknowledges the checkpoints it holds. o.mu is held.
func (o *Output) writeState() error {
	if o.docs != nil {
		if err := o.docs.Sync(); err != nil {
			return fmt.Errorf("syncing the documents' file: %w", err)
		}
	}
	mark, err := o.mark()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(stateFile{State: o.state, Output: mark})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(o.path, raw); err != nil {
		return fmt.Errorf("writing the state file: %w", err)
	}
	o.acks.Add(o.pending)
	o.pending, o.written = 0, time.Now()
	return nil
}

// Close writes out the documents captured since the last checkpoint and
// the state of checkpoints still waiting. The capture must have ended.
func (o *Output) Close() error {
	flushErr := o.w.Flush()
	if flushErr != nil {
		flushErr = fmt.Errorf("writing documents: %w", flushErr)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	err := o.err
	if err == nil && o.pending > 0 {
		err = o.writeState()
	}
	return errors.Join(flushErr, err)
}

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
