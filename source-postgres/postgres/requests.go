package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"pgcapture/protocol"
	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/sqlcapture"
)

// DefaultDocsURL is the documentation the spec response links to unless
// the connector is given another.
const DefaultDocsURL = "https://go.estuary.dev/source-postgresql"

// Connector answers the capture protocol's requests.
type Connector struct {
	// Log receives what the connector does; its last line on failure is
	// the error the runtime reports.
	Log logrus.FieldLogger
	// DocsURL is the documentation URL of the spec response.
	DocsURL string
	// ProgressInterval is how often a capture logs its lag and backfill
	// progress (0: every 30s).
	ProgressInterval time.Duration
}

// Serve reads one request from r and answers it on w; for open, it runs the
// capture session until ctx ends or something fails.
func (c *Connector) Serve(ctx context.Context, r *protocol.Reader, w *protocol.Writer) error {
	req, err := r.Read()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("no request arrived on stdin")
	}
	if err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	switch {
	case req.Spec != nil:
		return w.WriteSpec(c.Spec())
	case req.Discover != nil:
		bindings, err := c.Discover(ctx, req.Discover.Config)
		if err != nil {
			return err
		}
		return w.WriteDiscovered(bindings)
	case req.Validate != nil:
		bindings, err := c.Validate(ctx, req.Validate)
		if err != nil {
			return err
		}
		return w.WriteValidated(bindings)
	case req.Apply != nil:
		desc, err := c.Apply(ctx, req.Apply)
		if err != nil {
			return err
		}
		return w.WriteApplied(desc)
	case req.Open != nil:
		return c.Open(ctx, req.Open, r, w)
	case req.Acknowledge != nil:
		return fmt.Errorf("protocol error: acknowledge received before open")
	default:
		return fmt.Errorf("protocol error: the request holds no known message")
	}
}

// Spec answers spec: the configuration schemas and the documentation.
func (c *Connector) Spec() *protocol.SpecResponse {
	return &protocol.SpecResponse{
		Protocol:             protocol.ProtocolVersion,
		ConfigSchema:         config.ConfigSchema(),
		ResourceConfigSchema: config.ResourceSchema(),
		DocumentationURL:     c.DocsURL,
		ResourcePathPointers: []string{"/namespace", "/stream"},
	}
}

// Discover answers discover: a binding for each table the capture could
// capture, in a stable order.
func (c *Connector) Discover(ctx context.Context, rawConfig json.RawMessage) ([]protocol.DiscoveredBinding, error) {
	cfg, err := config.Parse(rawConfig)
	if err != nil {
		return nil, err
	}
	db, err := Connect(ctx, cfg, c.Log)
	if err != nil {
		return nil, err
	}
	defer db.Close(ctx)
	// Without logical replication, tables are offered as polled bindings.
	if why, err := db.replicationUnavailable(ctx); err != nil || why != "" {
		if err != nil {
			return nil, err
		}
		return db.discoverPolled(ctx, why)
	}
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
		if !cfg.IncludeTable(t.Schema, t.Name) {
			continue // discoveryFilters, advanced.discover_schemas
		}
		schema, err := db.documentSchema(t)
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

// Validate answers validate: every binding names a table, and the capture
// of those tables can run. It changes nothing in the database.
func (c *Connector) Validate(ctx context.Context, req *protocol.ValidateRequest) ([]protocol.ValidatedBinding, error) {
	cfg, err := config.Parse(req.Config)
	if err != nil {
		return nil, err
	}
	db, err := Connect(ctx, cfg, c.Log)
	if err != nil {
		return nil, err
	}
	defer db.Close(ctx)
	var resources []json.RawMessage
	for _, b := range req.Bindings {
		resources = append(resources, b.ResourceConfig)
	}
	if polled, err := polledResources(resources); err != nil || polled {
		if err != nil {
			return nil, err
		}
		var targets []Target
		for _, r := range resources {
			targets = append(targets, Target{Resource: r})
		}
		return db.validatePolling(ctx, targets)
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

// Apply answers apply.
func (c *Connector) Apply(_ context.Context, req *protocol.ApplyRequest) (string, error) {
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

// Open runs a capture session: it answers opened, then streams documents
// and checkpoints to w, and takes acknowledgements from r, until the
// context ends or something fails.
func (c *Connector) Open(ctx context.Context, req *protocol.OpenRequest, r *protocol.Reader, w *protocol.Writer) error {
	if req.Capture == nil {
		return fmt.Errorf("protocol error: open without a capture")
	}
	cfg, err := config.Parse(req.Capture.Config)
	if err != nil {
		return err
	}
	state, est, err := parseCheckpoint(req.State)
	if err != nil {
		return err
	}
	var targets []Target
	for i, b := range req.Capture.Bindings {
		if b.StateKey == "" {
			return fmt.Errorf("protocol error: binding %d has no stateKey", i)
		}
		targets = append(targets, Target{Resource: b.ResourceConfig, StateKey: b.StateKey})
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
	err = c.capture(ctx, cfg, targets, state, est, &sessionOutput{w: w}, acks, CaptureOptions{Mode: RuntimeMode, Opened: opened})
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

// sessionOutput writes the engine's documents and checkpoints to the runtime.
type sessionOutput struct{ w *protocol.Writer }

var _ sqlcapture.Output = (*sessionOutput)(nil)

func (o *sessionOutput) Captured(binding uint32, doc []byte) error {
	return o.w.WriteCaptured(binding, doc)
}

func (o *sessionOutput) SourcedSchema(binding uint32, schema []byte) error {
	return o.w.WriteSourcedSchema(binding, schema)
}

func (o *sessionOutput) Checkpoint(patch []byte) error { return o.w.WriteCheckpoint(patch, true) }
