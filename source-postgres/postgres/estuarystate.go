package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
)

// A capture that switches from Estuary's source-postgres opens with that
// connector's checkpoint. It is translated here into this connector's
// state, so that the capture resumes where Estuary's stopped: the stream
// from the same cursor (both are the end LSN of the last checkpointed
// commit), completed tables without a new backfill, and a backfill in
// progress after the last row Estuary read.

// estuaryState is the layout of Estuary's checkpoint.
type estuaryState struct {
	Cursor   *string                    `json:"cursor"`
	Bindings map[string]*estuaryBinding `json:"bindingStateV1"`
}

// estuaryBinding is one binding's state in Estuary's checkpoint.
type estuaryBinding struct {
	Mode       string          `json:"mode"`
	KeyColumns []string        `json:"key_columns"`
	Scanned    []byte          `json:"scanned"` // base64 in JSON
	Metadata   json.RawMessage `json:"metadata"`
	Backfilled int64           `json:"backfilled"`
}

// Modes of Estuary's binding state.
const (
	estuaryPending            = "Pending"
	estuaryBackfill           = "Backfill"
	estuaryUnfilteredBackfill = "UnfilteredBackfill"
	estuaryKeylessBackfill    = "KeylessBackfill"
	estuaryActive             = "Active"
	estuaryIgnore             = "Ignore"
	estuaryMissing            = "Missing"
)

// estuaryStateKey is the top-level key that only Estuary's layout has.
const estuaryStateKey = "bindingStateV1"

// parseCheckpoint parses the state an Open request carries: this
// connector's, or Estuary's (then est is set, and state has only its
// cursor until migrateEstuaryState fills in the streams).
func parseCheckpoint(raw json.RawMessage) (state sqlcapture.State, est *estuaryState, err error) {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil || top[estuaryStateKey] == nil {
		state, err = sqlcapture.ParseState(raw)
		return state, nil, err
	}
	if _, ours := top["streams"]; ours {
		return state, nil, fmt.Errorf("the capture's checkpointed state holds both this connector's %q and Estuary's %q: reset the capture's state, or remove one of them", "streams", estuaryStateKey)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	est = new(estuaryState)
	if err := dec.Decode(est); err != nil {
		return state, nil, fmt.Errorf("parsing the checkpointed state of Estuary's source-postgres: %w", err)
	}
	if est.Cursor != nil {
		state.Cursor = *est.Cursor
	}
	return state, est, nil
}

// keylessScanned is Estuary's position in a keyless backfill: the ctid
// "(block,0)" below which every block was read.
var keylessScanned = regexp.MustCompile(`^\(([0-9]+),0\)$`)

// migrateEstuaryState translates Estuary's binding states into streams of
// state for the bindings being captured. tables are the bindings' tables,
// in the same order. A binding whose backfill cannot continue from
// Estuary's position backfills again from the start, with a warning.
func migrateEstuaryState(est *estuaryState, state sqlcapture.State, bindings []sqlcapture.Binding, tables []*discovery.Table, log logrus.FieldLogger) sqlcapture.State {
	state.Streams = make(map[string]*sqlcapture.StreamState)
	var active, resumed, restarted int
	for i, b := range bindings {
		prev := est.Bindings[b.StateKey]
		if prev == nil {
			continue
		}
		restart := func(why string) {
			restarted++
			log.WithFields(logrus.Fields{"table": b.Stream.String(), "estuaryMode": prev.Mode}).
				Warnf("the table's backfill starts again from its first row: %s", why)
		}
		switch prev.Mode {
		case estuaryActive:
			state.Streams[b.StateKey] = &sqlcapture.StreamState{Mode: sqlcapture.ModeActive, KeyColumns: b.KeyColumns, Backfilled: prev.Backfilled}
			active++
		case estuaryPending, estuaryIgnore, estuaryMissing:
			// Not yet begun, or bound again after removal: a new backfill,
			// as Estuary's connector would start.
		case estuaryBackfill, estuaryUnfilteredBackfill, estuaryKeylessBackfill:
			scanned, err := migrateScanned(prev, b, tables[i])
			if err != nil {
				restart(err.Error())
				continue
			}
			backfilled := prev.Backfilled
			if scanned == nil {
				backfilled = 0
			}
			state.Streams[b.StateKey] = &sqlcapture.StreamState{Mode: sqlcapture.ModeBackfill, KeyColumns: b.KeyColumns, Scanned: scanned, Backfilled: backfilled}
			resumed++
		default:
			restart(fmt.Sprintf("Estuary's mode %q is not known", prev.Mode))
		}
	}
	log.WithFields(logrus.Fields{
		"cursor":           state.Cursor,
		"tablesBackfilled": active,
		"backfillsResumed": resumed,
		"backfillsRestart": restarted,
	}).Info("migrated the checkpoint of Estuary's source-postgres; the capture continues from its position")
	return state
}

// migrateScanned translates a backfill position of Estuary's into one of
// this connector's for binding b of table t.
func migrateScanned(prev *estuaryBinding, b sqlcapture.Binding, t *discovery.Table) ([]byte, error) {
	keyless := prev.Mode == estuaryKeylessBackfill
	switch {
	case keyless != (b.KeyColumns == nil):
		return nil, fmt.Errorf("the table was backfilled by Estuary's connector %s, and this connector backfills it %s",
			map[bool]string{true: "in physical order", false: "in key order"}[keyless],
			map[bool]string{true: "in physical order", false: "in key order"}[b.KeyColumns == nil])
	case prev.Scanned == nil:
		return nil, nil
	case keyless:
		m := keylessScanned.FindSubmatch(prev.Scanned)
		if m == nil {
			return nil, fmt.Errorf("the keyless backfill position %q is not a ctid (block,0)", prev.Scanned)
		}
		block, err := strconv.ParseInt(string(m[1]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("the keyless backfill position %q: %w", prev.Scanned, err)
		}
		// Estuary read every block below this one; so does a position
		// here name the block the next chunk starts at.
		return sqlcapture.AppendKeyInt(nil, block), nil
	case prev.KeyColumns != nil && !slices.Equal(prev.KeyColumns, b.KeyColumns):
		return nil, fmt.Errorf("the table was backfilled by Estuary's connector by the key %q, and this connector's key is %q", prev.KeyColumns, b.KeyColumns)
	}
	elems, err := decodeFDBTuple(prev.Scanned)
	if err != nil {
		return nil, fmt.Errorf("its backfill position cannot be decoded: %w", err)
	}
	if len(elems) != len(b.KeyColumns) {
		return nil, fmt.Errorf("its backfill position has %d values, and the key %q has %d columns", len(elems), b.KeyColumns, len(b.KeyColumns))
	}
	var key []byte
	for i, name := range b.KeyColumns {
		c := tableColumn(t, name)
		if c == nil {
			return nil, fmt.Errorf("key column %q is missing", name)
		}
		if !c.Type.ResumesEstuaryOrder(c.BytewiseCollation()) {
			return nil, fmt.Errorf("key column %q (%s) is read in a different order than Estuary's connector read it (this connector reads text keys in byte order, COLLATE \"C\")", name, c.TypeName)
		}
		elem := elems[i]
		if tuple, ok := elem.(fdbTuple); ok && len(tuple) == 3 && tuple[0] == "N" {
			binary, _ := tuple[2].([]byte)
			elem = pgtypes.EstuaryNumeric{Binary: binary}
		}
		text, err := c.Type.EstuaryKeyText(elem)
		if err != nil {
			return nil, fmt.Errorf("key column %q: %w", name, err)
		}
		if key, err = c.AppendKey(key, []byte(text)); err != nil {
			return nil, fmt.Errorf("key column %q: %w", name, err)
		}
	}
	return key, nil
}

func tableColumn(t *discovery.Table, name string) *discovery.Column {
	for _, c := range t.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// newMigratingOutput wraps out for a capture that starts from the migrated
// state.
func newMigratingOutput(out sqlcapture.Output, migrated sqlcapture.State) (*migratingOutput, error) {
	// A copy: the engine holds the original.
	raw, err := json.Marshal(migrated)
	if err != nil {
		return nil, err
	}
	full := new(sqlcapture.State)
	if err := json.Unmarshal(raw, full); err != nil {
		return nil, err
	}
	return &migratingOutput{Output: out, full: full}, nil
}

// migratingOutput passes the engine's output on, and makes the first
// checkpoint replace Estuary's state with the whole migrated one: the
// engine's checkpoints patch only what changed since the state it started
// from, which the runtime does not hold yet.
type migratingOutput struct {
	sqlcapture.Output
	full *sqlcapture.State // nil once the first checkpoint is out
}

var _ sqlcapture.Output = (*migratingOutput)(nil)

func (o *migratingOutput) Checkpoint(patch []byte) error {
	if o.full == nil {
		return o.Output.Checkpoint(patch)
	}
	if err := o.full.Apply(patch); err != nil {
		return err
	}
	whole, err := json.Marshal(o.full)
	if err != nil {
		return fmt.Errorf("encoding the migrated state: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(whole, &fields); err != nil {
		return err
	}
	fields[estuaryStateKey] = json.RawMessage("null") // deletes Estuary's bindings in the merge
	out, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	o.full = nil
	return o.Output.Checkpoint(out)
}
