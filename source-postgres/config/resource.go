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
)

// modes are the accepted values of mode, and the choices its JSON schema offers.
var modes = []string{ModeAutomatic, ModeNormal, ModePrecise, ModeOnlyChanges, ModeWithoutPrimaryKey}

// SyncModeIncremental is the only supported sync mode.
const SyncModeIncremental = "incremental"

// Resource is the configuration of one binding: the table it captures.
type Resource struct {
	Namespace string `json:"namespace" jsonschema:"required,title=Schema" jsonschema_description:"The schema (namespace) of the table."`
	Stream    string `json:"stream" jsonschema:"required,title=Table Name" jsonschema_description:"The name of the table."`
	SyncMode  string `json:"syncMode,omitempty" jsonschema:"title=Sync Mode" jsonschema_description:"How the table is captured. Always incremental."`
	Mode      string `json:"mode,omitempty" jsonschema:"title=Backfill Mode" jsonschema_description:"How the table's existing rows are backfilled. Empty: chosen automatically. Normal: in key order, as the database orders keys. Precise: in key order, discarding replication events for keys not yet backfilled. Only Changes: no backfill, only changes are captured. Without Primary Key: in physical order, for tables without a usable key."`
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
	return errors.Join(errs...)
}
