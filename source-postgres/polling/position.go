package polling

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Position is where a polled binding stands after a poll. The positions of
// all bindings form the capture's stream cursor, so the engine checkpoints
// them with the documents of the poll that reached them.
type Position struct {
	// Seq counts the binding's completed polls.
	Seq int64 `json:"seq"`
	// StartMillis is when the last poll began (Unix milliseconds): the next
	// is due one poll interval later, across restarts too.
	StartMillis int64 `json:"ts_ms"`
	// Cursor holds the text of the greatest cursor value read so far, one
	// element per cursor column; empty before the first row with a cursor.
	Cursor []string `json:"cursor,omitempty"`
	// CursorColumns names the columns Cursor holds values of: values of
	// other columns mean nothing once the binding's cursor changed.
	CursorColumns []string `json:"cursor_columns,omitempty"`
	// Horizon is the xmin (as a 64-bit xid8) of the last poll's snapshot:
	// every transaction that poll could not see has an xid at or above it,
	// so the next poll also reads the rows such transactions wrote,
	// whatever their cursor values (see Guard in poll.go).
	Horizon uint64 `json:"horizon,omitempty"`
}

// positions is the JSON form of the stream cursor:
// {"polls":{"<state key>":{"seq":3,"ts_ms":…,"cursor":["…"],
// "cursor_columns":["updated_at"],"horizon":…}}}.
type positions struct {
	Polls map[string]*Position `json:"polls"`
}

// parsePositions decodes a stream cursor. An empty cursor is a new capture.
// A cursor that is not ours (a replication LSN, from a capture whose
// bindings were replicated) is reported by ok = false: every binding then
// starts afresh, which loses nothing, since a first poll reads everything.
func parsePositions(cursor string) (_ map[string]*Position, ok bool, _ error) {
	if cursor == "" {
		return map[string]*Position{}, true, nil
	}
	if !strings.HasPrefix(cursor, "{") {
		return map[string]*Position{}, false, nil
	}
	var p positions
	if err := json.Unmarshal([]byte(cursor), &p); err != nil {
		return nil, false, fmt.Errorf("the checkpointed poll positions %q are not valid: %w", cursor, err)
	}
	if p.Polls == nil {
		p.Polls = map[string]*Position{}
	}
	return p.Polls, true, nil
}

func encodePositions(polls map[string]*Position) string {
	// Map keys are sorted, so equal positions encode equally.
	b, _ := json.Marshal(positions{Polls: polls})
	return string(b)
}
