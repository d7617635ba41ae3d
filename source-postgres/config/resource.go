package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Backfill modes of a Resource.
const (
	ModeAutomatic         = ""                    // the connector chooses from the table's key
	ModeNormal            = "Normal"              // backfill in key order, letting the database order the keys
	ModePrecise           = "Precise"             // backfill in key order, filtering replication events by key
	ModeOnlyChanges       = "Only Changes"        // skip the backfill
	ModeWithoutPrimaryKey = "Without Primary Key" // backfill in physical (ctid) order
	ModePolling           = "Polling"             // no replication: poll the table (see poll.go)
)

// modes are the accepted values of mode, and the choices its JSON schema offers.
var modes = []string{ModeAutomatic, ModeNormal, ModePrecise, ModeOnlyChanges, ModeWithoutPrimaryKey, ModePolling}

// SyncModeIncremental is the only supported sync mode.
const SyncModeIncremental = "incremental"

// Resource is the configuration of one binding: the table it captures.
type Resource struct {
	Namespace string `json:"namespace" jsonschema:"required,title=Schema" jsonschema_description:"The schema (namespace) of the table."`
	Stream    string `json:"stream" jsonschema:"required,title=Table Name" jsonschema_description:"The name of the table."`
	SyncMode  string `json:"syncMode,omitempty" jsonschema:"title=Sync Mode" jsonschema_description:"How the table is captured. Always incremental."`
	Mode      string `json:"mode,omitempty" jsonschema:"title=Backfill Mode" jsonschema_description:"How the table's existing rows are backfilled. Empty: chosen automatically. Normal: in key order, as the database orders keys. Precise: in key order, discarding replication events for keys not yet backfilled. Only Changes: no backfill, only changes are captured. Without Primary Key: in physical order, for tables without a usable key. Polling: no logical replication; the table is read on a schedule (see query, id_columns, cursor and poll)."`

	// Polling: the binding is read on a schedule instead of replicated
	// (poll.go). A query makes the binding polled.
	Query     string   `json:"query,omitempty" jsonschema:"title=Query" jsonschema_description:"A SELECT whose rows are the binding's documents (joins, filters and views allowed), read on a schedule without logical replication. namespace and stream then only name the binding." jsonschema_extras:"multiline=true"`
	IDColumns []string `json:"id_columns,omitempty" jsonschema:"title=ID Columns" jsonschema_description:"Polling: the result columns that identify a document (its collection key). Default for a table: its primary key. Required for a query."`
	Cursor    []string `json:"cursor,omitempty" jsonschema:"title=Cursor Columns" jsonschema_description:"Polling: columns whose values only grow (updated_at, an id from a sequence). With a cursor, each poll reads only rows changed since the last one; without, each poll reads everything and reports vanished rows as deletions."`
	Poll      string   `json:"poll,omitempty" jsonschema:"title=Poll Interval" jsonschema_description:"Polling: how often the binding is read, as a Go duration such as 30s, 5m or 1h. Default 5m."`
}

// ParseResource decodes and validates a resource configuration. Unknown and
// ill-typed fields are errors.
func ParseResource(raw []byte) (*Resource, error) {
	var r Resource
	if err := decodeStrict(raw, &r); err != nil {
		return nil, fmt.Errorf("resource configuration: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("resource configuration: %w", err)
	}
	return &r, nil
}

// Validate reports every problem of the resource configuration at once.
func (r *Resource) Validate() error {
	var errs []error
	if r.Namespace == "" {
		errs = append(errs, errors.New(`"namespace" is required: set it to the schema of the table, such as "public"`))
	}
	if r.Stream == "" {
		errs = append(errs, errors.New(`"stream" is required: set it to the name of the table`))
	}
	if r.SyncMode != "" && r.SyncMode != SyncModeIncremental {
		errs = append(errs, fmt.Errorf(`"syncMode" %q is not supported: use %q or leave it empty`, r.SyncMode, SyncModeIncremental))
	}
	if !slices.Contains(modes, r.Mode) {
		quoted := []string{`"" (automatic)`}
		for _, m := range modes[1:] {
			quoted = append(quoted, strconv.Quote(m))
		}
		errs = append(errs, fmt.Errorf(`"mode" %q is not a backfill mode: use one of %s`, r.Mode, strings.Join(quoted, ", ")))
	}
	errs = append(errs, r.validatePolling()...)
	return errors.Join(errs...)
}
