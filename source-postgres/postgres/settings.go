package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
)

// Settings of the endpoint configuration that shape schemas and values,
// many of them Estuary's (config/estuary.go).

// documentSchema is the table's document schema under the capture's
// settings.
func (db *Database) documentSchema(t *discovery.Table) (json.RawMessage, error) {
	return t.DocumentSchemaWith(discovery.SchemaOptions{
		SourceTag:   db.cfg.Advanced.SourceTag != "",
		HistoryMode: db.cfg.HistoryMode,
		Inference:   db.cfg.SchemaInference(),
	})
}

// encoding is how values become JSON under the capture's settings.
func encoding(cfg *config.Endpoint) pgtypes.Encoding {
	e := pgtypes.Encoding{FlattenArrays: cfg.FlattenArrays()}
	if cfg.TruncateOversized() {
		e.TruncateAt = config.TruncateThreshold
	}
	return e
}

// loadRegistry loads the database's types, converted under the capture's
// settings.
func (db *Database) loadRegistry(ctx context.Context) (*pgtypes.Registry, error) {
	types, err := pgtypes.LoadRegistry(ctx, db.conn)
	if err != nil {
		return nil, fmt.Errorf("loading the database's types: %w", err)
	}
	return types.WithEncoding(encoding(db.cfg)), nil
}

// queryParams are the run-time parameters of the query connection that the
// configuration sets.
func queryParams(cfg *config.Endpoint, params map[string]string) {
	if d, _ := cfg.Advanced.StatementTimeout(); d >= 0 {
		params["statement_timeout"] = strconv.FormatInt(d.Milliseconds(), 10)
	}
}

// logCompatibilityNotes logs, once per connection, what the settings of
// Estuary's configuration that are not honoured mean here.
func (db *Database) logCompatibilityNotes() {
	for _, n := range db.cfg.CompatibilityNotes() {
		db.log.Warn(n)
	}
}
