package localcapture

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"pgcapture/sqlcapture"
)

// A state file holds the capture's state, as a runtime would, and, when
// the documents go to a regular file, a mark of how far into that file the
// state reaches:
//
//	{"cursor": "0/1A2B3C4", "streams": {…}, "output": {"device": 2049, "inode": 1234, "offset": 5678}}
//
// Documents written after the mark belong to checkpoints the state file
// does not hold yet. A runtime discards such documents when a capture
// fails; a file keeps them, and the run that resumes from the state would
// write them again, perhaps differently (a row a killed run backfilled and
// that was deleted since is not backfilled again, and no delete is sent
// for it), which would leave a row that no longer exists in the file for
// good. So a run that resumes writing to the same file first cuts it back
// to the mark.

// OutputMark is where in the documents' file a state file's state reaches.
type OutputMark struct {
	Device uint64 `json:"device"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// stateFile is a state file's JSON form.
type stateFile struct {
	sqlcapture.State
	Output *OutputMark `json:"output,omitempty"`
}

// ReadStateFile reads the state file at path; a missing file is a new
// capture's empty state. mark is nil unless the state file has one.
func ReadStateFile(path string) (state sqlcapture.State, mark *OutputMark, err error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return sqlcapture.State{}, nil, nil
	}
	if err != nil {
		return sqlcapture.State{}, nil, fmt.Errorf("reading the state file: %w", err)
	}
	if state, mark, err = ParseStateFile(raw); err != nil {
		return sqlcapture.State{}, nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return state, mark, nil
}

// ParseStateFile decodes a state file's content.
func ParseStateFile(raw []byte) (state sqlcapture.State, mark *OutputMark, err error) {
	if len(raw) == 0 {
		return sqlcapture.State{}, nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return sqlcapture.State{}, nil, err
	}
	if rawMark, ok := fields["output"]; ok {
		if err := json.Unmarshal(rawMark, &mark); err != nil {
			return sqlcapture.State{}, nil, fmt.Errorf("its output mark: %w", err)
		}
		delete(fields, "output")
		if raw, err = json.Marshal(fields); err != nil {
			return sqlcapture.State{}, nil, err
		}
	}
	if state, err = sqlcapture.ParseState(raw); err != nil {
		return sqlcapture.State{}, nil, err
	}
	return state, mark, nil
}

// fileIdentity returns the device and inode of f.
func fileIdentity(f *os.File) (device, inode uint64, size int64, err error) {
	info, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, errors.New("the file has no device and inode")
	}
	return uint64(st.Dev), st.Ino, info.Size(), nil //nolint:unconvert // Dev's type differs between platforms
}

// mark returns how far into the documents' file the state about to be
// written reaches: its end, since the documents were just flushed.
func (o *Output) mark() (*OutputMark, error) {
	if o.docs == nil {
		return nil, nil
	}
	offset, err := o.docs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("reading the documents' file position: %w", err)
	}
	return &OutputMark{Device: o.device, Inode: o.inode, Offset: offset}, nil
}

// CutBack cuts the documents' file back to mark when it is the file the
// mark was made in and reaches past it, so that documents of checkpoints
// the state file does not hold are written only by the run that resumes.
// It returns how many bytes it cut. Another file (a new one, or the
// documents going to a pipe) is left alone.
func (o *Output) CutBack(mark *OutputMark) (int64, error) {
	if o.docs == nil || mark == nil || mark.Device != o.device || mark.Inode != o.inode {
		return 0, nil
	}
	_, _, size, err := fileIdentity(o.docs)
	if err != nil {
		return 0, err
	}
	if size <= mark.Offset {
		return 0, nil
	}
	if err := o.docs.Truncate(mark.Offset); err != nil {
		return 0, fmt.Errorf("cutting the documents' file back to the %d bytes the state file covers: %w", mark.Offset, err)
	}
	// Without O_APPEND (`>` rather than `>>`), writes go where the file
	// position is.
	if _, err := o.docs.Seek(mark.Offset, io.SeekStart); err != nil {
		return 0, err
	}
	return size - mark.Offset, nil
}
