package sqlcapture

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// State is the capture's checkpointed state. Its JSON form is what the
// runtime stores and hands back on the next open:
//
//	{"cursor": "0/1A2B3C4", "streams": {"<stateKey>": {"mode": "Backfill",
//	  "key_columns": ["id"], "scanned": "<base64 key>", "backfilled": 4096}}}
//
// cursor is where the change stream resumes; each stream's scanned key is the
// last key the backfill has emitted (absent once the table is backfilled).
// A backfill split into ranges read at once (Options.BackfillConnections)
// records each range's progress in ranges instead, and its scanned is null:
//
//	"ranges": [{"end": "<base64 key>", "scanned": null, "done": false}, …,
//	           {"end": null, "scanned": "<base64 key>", "done": false}]
//
// A state without ranges (all states written before ranges existed) is one
// range from scanned to the end of the table.
type State struct {
	Cursor  string                  `json:"cursor,omitempty"`
	Streams map[string]*StreamState `json:"streams,omitempty"`
}

// Stream modes.
const (
	// ModeBackfill: the table is being backfilled; changes are emitted only
	// for keys at or below Scanned.
	ModeBackfill = "Backfill"
	// ModeActive: the table is backfilled (or its backfill was skipped);
	// every change is emitted.
	ModeActive = "Active"
)

// StreamState is the checkpointed state of one binding.
type StreamState struct {
	Mode       string   `json:"mode"`
	KeyColumns []string `json:"key_columns,omitempty"`
	// Scanned is the encoded key of the last backfilled row. Always written
	// (as null when empty) so that a merge patch clears it.
	Scanned    []byte `json:"scanned"`
	Backfilled int64  `json:"backfilled"`
	// Ranges, when the backfill is split, are its parts in position order;
	// empty when it is not. A checkpoint of a binding that was split
	// always writes it (as null once the backfill is complete), so that a
	// merge patch clears it.
	Ranges []KeyRange `json:"ranges,omitempty"`
}

// KeyRange is one part of a split backfill: the rows positioned after the
// previous range's End (the first range: from the table's start) up to and
// including its own End (the last range has none: to the table's end).
// Every field is always written, since a merge patch replaces the whole
// list.
type KeyRange struct {
	End []byte `json:"end"`
	// Scanned is the position of the last row read (nil: none yet, the
	// range starts after the previous range's End).
	Scanned []byte `json:"scanned"`
	// Done: every row of the range has been read.
	Done bool `json:"done"`
}

// Started reports whether the state records any progress: a stream
// position, or a backfill that has read or finished something. A state
// that has not started is a new capture's first checkpoint, written before
// anything was read: resuming from it is starting over.
func (s State) Started() bool {
	if s.Cursor != "" {
		return true
	}
	for _, st := range s.Streams {
		if st.Mode != ModeBackfill || st.Scanned != nil || st.Backfilled > 0 || len(st.Ranges) > 0 {
			return true
		}
	}
	return false
}

// ParseState decodes a checkpointed state. An empty or null state is a new
// capture. Unknown fields are an error: the state is ours and a field we do
// not understand means it was written by something else.
func ParseState(raw json.RawMessage) (State, error) {
	var st State
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
		return st, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return State{}, fmt.Errorf("parsing the capture's checkpointed state: %w (the state is written by this connector; if it came from another connector, reset the capture's state)", err)
	}
	for key, s := range st.Streams {
		if s == nil {
			delete(st.Streams, key)
			continue
		}
		if s.Mode != ModeBackfill && s.Mode != ModeActive {
			return State{}, fmt.Errorf("parsing the capture's checkpointed state: stream %q has unknown mode %q", key, s.Mode)
		}
		if err := checkRanges(s); err != nil {
			return State{}, fmt.Errorf("parsing the capture's checkpointed state: stream %q: %w (the state is written by this connector; reset the capture's state or re-backfill the binding)", key, err)
		}
	}
	return st, nil
}

// Apply merges a checkpoint's patch into the state, as the runtime does
// (RFC 7396 restricted to the shape checkpoints have).
func (st *State) Apply(patch []byte) error {
	var p struct {
		Cursor  *string                    `json:"cursor"`
		Streams map[string]json.RawMessage `json:"streams"`
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return fmt.Errorf("applying checkpoint: %w", err)
	}
	if p.Cursor != nil {
		st.Cursor = *p.Cursor
	}
	for key, raw := range p.Streams {
		if string(raw) == "null" {
			delete(st.Streams, key)
			continue
		}
		s := new(StreamState)
		if prev := st.Streams[key]; prev != nil {
			*s = *prev
			// A merge patch replaces a list whole: decoding into the
			// previous one would keep fields of its elements.
			s.Ranges = nil
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(raw, &fields); err == nil && fields["ranges"] == nil {
				s.Ranges = prev.Ranges
			}
		}
		if err := json.Unmarshal(raw, s); err != nil {
			return fmt.Errorf("applying checkpoint to stream %q: %w", key, err)
		}
		if st.Streams == nil {
			st.Streams = make(map[string]*StreamState)
		}
		st.Streams[key] = s
	}
	return nil
}

// checkRanges reports a split backfill whose ranges are not in order: every
// range but the last has an End, each greater than the one before, and a
// state that is not backfilling has none.
func checkRanges(s *StreamState) error {
	if len(s.Ranges) == 0 {
		return nil
	}
	if s.Mode != ModeBackfill {
		return fmt.Errorf("mode %s has backfill ranges", s.Mode)
	}
	for i, r := range s.Ranges {
		last := i == len(s.Ranges)-1
		if (r.End == nil) != last {
			return fmt.Errorf("backfill range %d of %d has the wrong end", i+1, len(s.Ranges))
		}
		if i > 0 && !last && bytes.Compare(s.Ranges[i-1].End, r.End) >= 0 {
			return fmt.Errorf("backfill range %d ends before the one before it", i+1)
		}
	}
	return nil
}
