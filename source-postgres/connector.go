package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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
	cfg, err := config.Parse(rawConfig)
	if err != nil {
		return nil, err
	}
	db, err := connect(ctx, cfg, c.log)
	if err != nil {
		return nil, err
	}
	defer db.close(ctx)
	var out []protocol.DiscoveredBinding
	for _, t := range db.tables {
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
func resolveBindings(db *database, resources []json.RawMessage) ([]resolvedBinding, error) {
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
			problems = append(problems, fmt.Sprintf("binding %d: table %q.%q was not found in database %q (or is not readable by user %q)", i, res.Namespace, res.Stream, db.cfg.Database, db.cfg.User))
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
	bindings, err := resolveBindings(db, resources)
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
	db, err := connect(ctx, cfg, c.log)
	if err != nil {
		return err
	}
	defer db.close(context.WithoutCancel(ctx))

	var resources []json.RawMessage
	for _, b := range req.Capture.Bindings {
		resources = append(resources, b.ResourceConfig)
	}
	resolved, err := resolveBindings(db, resources)
	if err != nil {
		return err
	}
	skip := make(map[string]bool)
	for _, t := range cfg.SkipBackfillTables() {
		skip[t] = true
	}
	var bindings []sqlcapture.Binding
	for i, b := range resolved {
		if b.table.Keyless {
			return fmt.Errorf("table %s has no primary key or NOT NULL unique index: capturing keyless tables is not supported yet", b.table.QuotedName())
		}
		stateKey := req.Capture.Bindings[i].StateKey
		if stateKey == "" {
			return fmt.Errorf("protocol error: binding %d (%s) has no stateKey", i, b.table.QuotedName())
		}
		id := sqlcapture.StreamID{Schema: b.table.Schema, Table: b.table.Name}
		bindings = append(bindings, sqlcapture.Binding{
			Index:        uint32(i),
			StateKey:     stateKey,
			Stream:       id,
			KeyColumns:   b.table.Key,
			SkipBackfill: skip[id.String()] || b.resource.Mode == config.ModeOnlyChanges,
		})
	}
	if err := db.prepareCapture(ctx, tablesOf(resolved), state.Cursor); err != nil {
		return err
	}
	if err := w.WriteOpened(true); err != nil {
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	acks := sqlcapture.NewAcknowledgements()
	go func() {
		if err := readAcknowledgements(r, acks); err != nil {
			cancel(err)
		}
	}()

	err = sqlcapture.Run(ctx, db, bindings, state, &output{w: w}, acks, sqlcapture.Options{
		ChunkSize: cfg.Advanced.BackfillChunkSize,
		Logger:    c.log,
	})
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
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

func (o *output) Checkpoint(patch []byte) error { return o.w.WriteCheckpoint(patch, true) }
