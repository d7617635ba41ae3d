package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"pgcapture/protocol"
	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgversion"
	"pgcapture/source-postgres/polling"
	"pgcapture/sqlcapture"
)

// A capture whose bindings are all polled (a "query", or "mode": "Polling")
// needs no logical replication: no slot, publication or watermarks table,
// no REPLICATION attribute. Mixing polled and replicated bindings in one
// capture is refused: the two would need one combined stream cursor.

// polledResources reports whether the bindings are polled: all of them
// (true) or none (false). A mix is an error naming the polled bindings.
func polledResources(resources []json.RawMessage) (bool, error) {
	var polled []string
	for i, raw := range resources {
		// Resources that do not parse are reported by whoever resolves them.
		if res, err := config.ParseResource(raw); err == nil && res.Polled() {
			polled = append(polled, fmt.Sprintf("binding %d (%s.%s)", i, res.Namespace, res.Stream))
		}
	}
	switch {
	case len(polled) == 0:
		return false, nil
	case len(polled) == len(resources):
		return true, nil
	}
	return false, fmt.Errorf("%s are polled but the capture's other bindings are replicated: one capture either polls all its bindings or replicates all of them; put the polled bindings in a capture of their own",
		strings.Join(polled, ", "))
}

// preparePolling describes every polled binding on the database, reporting
// every problem at once, each naming its binding and field.
func (db *Database) preparePolling(ctx context.Context, targets []Target) ([]*polling.Binding, error) {
	// Connect refused a server too old for any capture (polls use
	// pg_current_snapshot(), new in 13).
	var out []*polling.Binding
	var problems []string
	for i, t := range targets {
		res, err := config.ParseResource(t.Resource)
		if err != nil {
			problems = append(problems, fmt.Sprintf("binding %d: %v", i, err))
			continue
		}
		spec := polling.Spec{
			StateKey:  t.StateKey,
			Stream:    sqlcapture.StreamID{Schema: res.Namespace, Table: res.Stream},
			Query:     res.Query,
			IDColumns: res.IDColumns,
			Cursor:    res.Cursor,
			Interval:  res.PollInterval(),
			SourceTag: db.cfg.Advanced.SourceTag,
		}
		name := fmt.Sprintf("binding %d (%s.%s)", i, res.Namespace, res.Stream)
		if res.Query == "" {
			if spec.Table = db.tables[spec.Stream]; spec.Table == nil {
				why, err := discovery.WhyNotListed(ctx, db.conn, res.Namespace, res.Stream, db.discoveryOptions())
				if err != nil {
					return nil, err
				}
				problems = append(problems, fmt.Sprintf(`%s: table %q.%q %s (to poll a view, give a "query")`, name, res.Namespace, res.Stream, why))
				continue
			}
		}
		b, err := polling.Prepare(ctx, db.conn.PgConn(), db.types, spec)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		out = append(out, b)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}

// capturePolling runs a capture whose bindings are all polled.
func (c *Connector) capturePolling(ctx context.Context, db *Database, targets []Target, state sqlcapture.State, out sqlcapture.Output, acks *sqlcapture.Acknowledgements, opened func() error) error {
	bindings, err := db.preparePolling(ctx, targets)
	if err != nil {
		return err
	}
	engine := make([]sqlcapture.Binding, len(bindings))
	for i, b := range bindings {
		engine[i] = sqlcapture.Binding{Index: uint32(i), StateKey: b.StateKey, Stream: b.Stream, KeyColumns: b.IDColumns, SkipBackfill: true}
		if st := state.Streams[b.StateKey]; st != nil && st.Mode == sqlcapture.ModeBackfill {
			return fmt.Errorf("binding %d (%s) was being backfilled by replication when it became polled: increment its backfill counter so that it starts afresh with a poll", i, b.Stream)
		}
	}
	if err := opened(); err != nil {
		return err
	}
	src := polling.NewSource(db.conn.PgConn(), db.types, bindings, c.Log)
	return sqlcapture.Run(ctx, src, engine, state, out, acks, sqlcapture.Options{Logger: c.Log})
}

// validatePolling answers validate for polled bindings.
func (db *Database) validatePolling(ctx context.Context, targets []Target) ([]protocol.ValidatedBinding, error) {
	bindings, err := db.preparePolling(ctx, targets)
	if err != nil {
		return nil, err
	}
	var out []protocol.ValidatedBinding
	for _, b := range bindings {
		out = append(out, protocol.ValidatedBinding{ResourcePath: []string{b.Stream.Schema, b.Stream.Table}})
	}
	return out, nil
}

// replicationUnavailable says why the server offers no logical replication
// to this user, or "" when it does (or when the server is too old for any
// capture, which checkServer reports).
func (db *Database) replicationUnavailable(ctx context.Context) (string, error) {
	if !db.server.Supported() {
		return "", nil
	}
	f, err := db.inspectServer(ctx)
	if err != nil {
		return "", err
	}
	switch {
	case db.standby && !db.server.Has(pgversion.LogicalDecodingOnStandby):
		return "the server is a standby (a read replica), where PostgreSQL before 16 has no logical decoding", nil
	case f.walLevel != "logical":
		return fmt.Sprintf("wal_level is %q, not logical", f.walLevel), nil
	case !f.replication:
		return fmt.Sprintf("user %q lacks the REPLICATION attribute", db.cfg.User), nil
	}
	return "", nil
}

// discoverPolled offers every table that has a key as a polled binding:
// each poll a full refresh, until the user names a cursor.
func (db *Database) discoverPolled(ctx context.Context, why string) ([]protocol.DiscoveredBinding, error) {
	db.log.WithField("reason", why).Warn("logical replication is unavailable, so tables are offered as polled bindings (mode Polling); see \"Capturing without logical replication\" in the README")
	tables := slices.SortedFunc(maps.Values(db.tables), func(a, b *discovery.Table) int {
		return cmp.Or(cmp.Compare(a.Schema, b.Schema), cmp.Compare(a.Name, b.Name))
	})
	var out []protocol.DiscoveredBinding
	for _, t := range tables {
		if t.Keyless {
			db.log.WithField("table", t.QuotedName()).Info("not offered for polling: the table has no primary key or unique index; bind it with \"id_columns\" naming the columns that identify a row")
			continue
		}
		b, err := polling.Prepare(ctx, db.conn.PgConn(), db.types, polling.Spec{
			Stream: sqlcapture.StreamID{Schema: t.Schema, Table: t.Name},
			Table:  t,
		})
		if err != nil {
			db.log.WithError(err).WithField("table", t.QuotedName()).Warn("not offered for polling")
			continue
		}
		schema, err := b.DocumentSchema()
		if err != nil {
			return nil, err
		}
		res, err := json.Marshal(config.Resource{Namespace: t.Schema, Stream: t.Name, Mode: config.ModePolling})
		if err != nil {
			return nil, err
		}
		out = append(out, protocol.DiscoveredBinding{
			RecommendedName: t.RecommendedName(),
			ResourceConfig:  res,
			DocumentSchema:  schema,
			Key:             b.KeyPointers(),
			IsFallbackKey:   t.IsFallbackKey,
		})
	}
	return out, nil
}
