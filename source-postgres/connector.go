package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"pgcapture/protocol"
	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/sqlcapture"
)

// connector answers the capture protocol's requests.
type connector struct {
	log *logrus.Logger
}

const defaultDocsURL = "https://go.estuary.dev/source-postgresql"

func (c *connector) spec() *protocol.SpecResponse {
	docs := os.Getenv("DOCS_URL")
	if docs == "" {
		docs = defaultDocsURL
	}
	return &protocol.SpecResponse{
		Protocol:             protocol.ProtocolVersion,
		ConfigSchema:         config.ConfigSchema(),
		ResourceConfigSchema: config.ResourceSchema(),
		DocumentationURL:     docs,
		ResourcePathPointers: []string{"/namespace", "/stream"},
	}
}

func (c *connector) discover(ctx context.Context, rawConfig json.RawMessage) ([]protocol.DiscoveredBinding, error) {
	return discoverBindings(ctx, rawConfig, c.log)
}

func discoverBindings(ctx context.Context, rawConfig json.RawMessage, log logrus.FieldLogger) ([]protocol.DiscoveredBinding, error) {
	cfg, err := config.Parse(rawConfig)
	if err != nil {
		return nil, err
	}
	db, err := connect(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer db.close(ctx)
	// A server that cannot be captured fails discovery too, rather than
	// offering bindings that could never run.
	if err := db.checkServer(ctx); err != nil {
		return nil, err
	}
	var out []protocol.DiscoveredBinding
	// Bindings are listed in a stable order, so repeated discoveries diff cleanly.
	tables := slices.SortedFunc(maps.Values(db.tables), func(a, b *discovery.Table) int {
		return cmp.Or(cmp.Compare(a.Schema, b.Schema), cmp.Compare(a.Name, b.Name))
	})
	for _, t := range tables {
		schema, err := t.DocumentSchema()
		if err != nil {
			return nil, fmt.Errorf("building the schema of table %s: %w", t.QuotedName(), err)
		}
		res := config.Resource{Namespace: t.Schema, Stream: t.Name}
		if t.Keyless {
			res.Mode = config.ModeWithoutPrimaryKey
		}
		rawRes, err := json.Marshal(res)
		if err != nil {
			return nil, err
		}
		out = append(out, protocol.DiscoveredBinding{
			RecommendedName: t.RecommendedName(),
			ResourceConfig:  rawRes,
			DocumentSchema:  schema,
			Key:             t.KeyPointers(),
			IsFallbackKey:   t.IsFallbackKey || t.Keyless,
		})
	}
	return out, nil
}

// resolvedBinding is a binding of the request matched to its table.
type resolvedBinding struct {
	resource *config.Resource
	table    *discovery.Table
}

// resolveBindings parses each binding's resource config and finds its
// table, reporting every problem at once.
func resolveBindings(ctx context.Context, db *database, resources []json.RawMessage) ([]resolvedBinding, error) {
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

func (c *connector) validate(ctx context.Context, req *protocol.ValidateRequest) ([]protocol.ValidatedBinding, error) {
	cfg, err := config.Parse(req.Config)
	if err != nil {
		return nil, err
	}
	db, err := connect(ctx, cfg, c.log)
	if err != nil {
		return nil, err
	}
	defer db.close(ctx)
	var resources []json.RawMessage
	for _, b := range req.Bindings {
		resources = append(resources, b.ResourceConfig)
	}
	bindings, err := resolveBindings(ctx, db, resources)
	if err != nil {
		return nil, err
	}
	if err := db.checkPrerequisites(ctx, tablesOf(bindings)); err != nil {
		return nil, err
	}
	var out []protocol.ValidatedBinding
	for _, b := range bindings {
		out = append(out, protocol.ValidatedBinding{ResourcePath: []string{b.resource.Namespace, b.resource.Stream}})
	}
	return out, nil
}

func (c *connector) apply(_ context.Context, req *protocol.ApplyRequest) (string, error) {
	if req.Capture == nil {
		return "", fmt.Errorf("protocol error: apply without a capture")
	}
	// Applying changes nothing in the database: the slot, publication
	// membership and watermarks table are settled when a session opens.
	if _, err := config.Parse(req.Capture.Config); err != nil {
		return "", err
	}
	return "", nil
}

func tablesOf(bindings []resolvedBinding) []*discovery.Table {
	var out []*discovery.Table
	for _, b := range bindings {
		out = append(out, b.table)
	}
	return out
}

// open runs a capture session: it answers opened, then streams documents
// and checkpoints until the context ends or something fails.
func (c *connector) open(ctx context.Context, req *protocol.OpenRequest, r *protocol.Reader, w *protocol.Writer) error {
	if req.Capture == nil {
		return fmt.Errorf("protocol error: open without a capture")
	}
	cfg, err := config.Parse(req.Capture.Config)
	if err != nil {
		return err
	}
	state, err := sqlcapture.ParseState(req.State)
	if err != nil {
		return err
	}
	var targets []captureTarget
	for i, b := range req.Capture.Bindings {
		if b.StateKey == "" {
			return fmt.Errorf("protocol error: binding %d has no stateKey", i)
		}
		targets = append(targets, captureTarget{resource: b.ResourceConfig, stateKey: b.StateKey})
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	acks := sqlcapture.NewAcknowledgements()
	opened := func() error {
		if err := w.WriteOpened(true); err != nil {
			return err
		}
		go func() {
			if err := readAcknowledgements(r, acks); err != nil {
				cancel(err)
			}
		}()
		return nil
	}
	err = runCapture(ctx, cfg, targets, state, &output{w: w}, acks, opened, c.log)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// captureTarget is one binding to capture: its resource configuration and
// the key of its state.
type captureTarget struct {
	resource json.RawMessage
	stateKey string
}

// runCapture connects, readies the database, calls opened, and captures
// targets until ctx ends or something fails.
func runCapture(ctx context.Context, cfg *config.Endpoint, targets []captureTarget, state sqlcapture.State, out sqlcapture.Output, acks *sqlcapture.Acknowledgements, opened func() error, log logrus.FieldLogger) error {
	db, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.close(context.WithoutCancel(ctx))

	var resources []json.RawMessage
	for _, t := range targets {
		resources = append(resources, t.resource)
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
			StateKey:     targets[i].stateKey,
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
		bindings = append(bindings, binding)
	}
	if err := db.prepareCapture(ctx, tablesOf(resolved), physical, state.Cursor); err != nil {
		return err
	}
	if err := opened(); err != nil {
		return err
	}
	err = sqlcapture.Run(ctx, db, bindings, state, out, acks, sqlcapture.Options{
		ChunkSize: cfg.Advanced.BackfillChunkSize,
		Logger:    log,
	})
	if err != nil && !sqlcapture.IsCancellation(err) {
		err = db.explainFailure(ctx, err)
	}
	return err
}

// readAcknowledgements drains the runtime's requests for the rest of the
// session. It returns nil at end of input: the runtime has nothing more to
// say, and the capture goes on until it is stopped.
func readAcknowledgements(r *protocol.Reader, acks *sqlcapture.Acknowledgements) error {
	for {
		req, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading acknowledgements: %w", err)
		}
		if req.Acknowledge == nil {
			return fmt.Errorf("protocol error: only acknowledge may follow open")
		}
		acks.Add(req.Acknowledge.Checkpoints)
	}
}

// output writes the engine's documents and checkpoints to the runtime.
type output struct{ w *protocol.Writer }

func (o *output) Captured(binding uint32, doc []byte) error { return o.w.WriteCaptured(binding, doc) }

func (o *output) SourcedSchema(binding uint32, schema []byte) error {
	return o.w.WriteSourcedSchema(binding, schema)
}

func (o *output) Checkpoint(patch []byte) error { return o.w.WriteCheckpoint(patch, true) }
