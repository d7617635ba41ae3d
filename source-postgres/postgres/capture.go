package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/sqlcapture"
)

// Target is one binding to capture: its resource configuration and the key
// of its state.
type Target struct {
	Resource json.RawMessage
	StateKey string
}

// CaptureOptions say how a capture runs.
type CaptureOptions struct {
	// Mode is who runs the capture.
	Mode Mode
	// Reset lets a capture started without state drop an existing slot in
	// ShellMode (RuntimeMode always may).
	Reset bool
	// Opened is called once the database is ready, before the engine runs.
	Opened func() error
	// Progress is told the capture's lag and backfill progress every
	// ProgressInterval; nil logs it every Connector.ProgressInterval.
	Progress         sqlcapture.ProgressObserver
	ProgressInterval time.Duration
}

// Capture connects, readies the database (prerequisites, slot), calls
// opts.Opened, and runs the engine over targets, resuming from state, until
// ctx ends or something fails. Documents and checkpoints go to out; acks
// tells the engine which checkpoints are durable.
func (c *Connector) Capture(ctx context.Context, cfg *config.Endpoint, targets []Target, state sqlcapture.State, out sqlcapture.Output, acks *sqlcapture.Acknowledgements, opts CaptureOptions) error {
	return c.capture(ctx, cfg, targets, state, nil, out, acks, opts)
}

// capture is Capture, resuming from Estuary's checkpoint when est is set
// (estuarystate.go).
func (c *Connector) capture(ctx context.Context, cfg *config.Endpoint, targets []Target, state sqlcapture.State, est *estuaryState, out sqlcapture.Output, acks *sqlcapture.Acknowledgements, opts CaptureOptions) error {
	db, err := Connect(ctx, cfg, c.Log)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	db.mode = opts.Mode

	var resources []json.RawMessage
	for _, t := range targets {
		resources = append(resources, t.Resource)
	}
	// Polled bindings need no replication (polling.go).
	if polled, err := polledResources(resources); err != nil || polled {
		if err != nil {
			return err
		}
		return c.capturePolling(ctx, db, targets, state, out, acks, opts.Opened)
	}
	resolved, err := resolveBindings(ctx, db, resources)
	if err != nil {
		return err
	}
	skip := make(map[string]bool)
	for _, t := range cfg.SkipBackfillTables() {
		skip[t] = true
	}
	var bindings []sqlcapture.Binding
	physical := make(map[*discovery.Table]bool)
	for i, b := range resolved {
		id := sqlcapture.StreamID{Schema: b.table.Schema, Table: b.table.Name}
		binding := sqlcapture.Binding{
			Index:        uint32(i),
			StateKey:     targets[i].StateKey,
			Stream:       id,
			KeyColumns:   b.table.Key,
			SkipBackfill: skip[id.String()] || b.resource.Mode == config.ModeOnlyChanges,
		}
		if b.table.Keyless || b.resource.Mode == config.ModeWithoutPrimaryKey {
			// Read in physical order, the table's rows have no key the
			// engine could compare changes with.
			physical[b.table] = true
			binding.KeyColumns = nil
		}
		if prev, ok := state.Streams[binding.StateKey]; (ok && prev.Mode == sqlcapture.ModeBackfill) || (!ok && !binding.SkipBackfill) {
			binding.EstimatedRows = db.estimateRows(ctx, b.table)
		}
		bindings = append(bindings, binding)
	}
	if est != nil {
		state = migrateEstuaryState(est, state, bindings, tablesOf(resolved), c.Log)
		if out, err = newMigratingOutput(out, state); err != nil {
			return err
		}
	}
	if err := db.prepareCapture(ctx, tablesOf(resolved), physical, state.Cursor, opts.Reset); err != nil {
		return err
	}
	if err := opts.Opened(); err != nil {
		return err
	}
	interval := c.ProgressInterval
	if opts.Progress != nil {
		interval = opts.ProgressInterval
	}
	err = sqlcapture.Run(ctx, db, bindings, state, out, acks, sqlcapture.Options{
		ChunkSize:           cfg.Advanced.BackfillChunkSize,
		BackfillConnections: cfg.Advanced.BackfillConnections,
		RetryTimeout:        cfg.RetryTimeout(),
		Logger:              c.Log,
		Progress:            opts.Progress,
		ProgressInterval:    interval,
		RebackfillTable:     opts.Mode.rebackfillTable(),
	})
	if err != nil && !sqlcapture.IsCancellation(err) {
		err = db.explainFailure(ctx, err)
	}
	return err
}

// resolvedBinding is a binding of the request matched to its table.
type resolvedBinding struct {
	resource *config.Resource
	table    *discovery.Table
}

// resolveBindings parses each binding's resource config and finds its
// table, reporting every problem at once.
func resolveBindings(ctx context.Context, db *Database, resources []json.RawMessage) ([]resolvedBinding, error) {
	var out []resolvedBinding
	var problems []string
	for i, raw := range resources {
		res, err := config.ParseResource(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("binding %d: %v", i, err))
			continue
		}
		t := db.tables[sqlcapture.StreamID{Schema: res.Namespace, Table: res.Stream}]
		if t == nil {
			why, err := discovery.WhyNotListed(ctx, db.conn, res.Namespace, res.Stream, db.discoveryOptions())
			if err != nil {
				return nil, err
			}
			problems = append(problems, fmt.Sprintf("binding %d: table %q.%q %s", i, res.Namespace, res.Stream, why))
			continue
		}
		out = append(out, resolvedBinding{resource: res, table: t})
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}

func tablesOf(bindings []resolvedBinding) []*discovery.Table {
	var out []*discovery.Table
	for _, b := range bindings {
		out = append(out, b.table)
	}
	return out
}
