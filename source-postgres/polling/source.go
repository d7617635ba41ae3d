package polling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
)

// Source is the capture engine's Database for a capture whose bindings are
// all polled. Its bindings are streamed from their first poll: the engine
// is given them as bindings that skip the backfill, so it never asks for a
// chunk or a watermark.
type Source struct {
	conn     *pgconn.PgConn
	types    *pgtypes.Registry
	log      logrus.FieldLogger
	bindings []*Binding

	// mu guards each binding's described table, which a poll may rebuild
	// while the engine reads its schema.
	mu sync.Mutex
}

var _ sqlcapture.Database = (*Source)(nil)

// NewSource polls bindings over conn, which it uses alone until the
// capture ends.
func NewSource(conn *pgconn.PgConn, types *pgtypes.Registry, bindings []*Binding, log logrus.FieldLogger) *Source {
	return &Source{conn: conn, types: types, bindings: bindings, log: log}
}

// StartReplication implements sqlcapture.Database: it starts polling from
// the positions in cursor. A poll's position is checkpointed only once the
// poll is complete, so acknowledged has nothing to release.
func (s *Source) StartReplication(ctx context.Context, cursor, _ string) (sqlcapture.ReplicationStream, error) {
	all, ours, err := parsePositions(cursor)
	if err != nil {
		return nil, err
	}
	if !ours {
		s.log.WithField("cursor", cursor).Warn("the checkpointed cursor is a replication position: this capture replicated before; every binding now starts with a poll that reads all its rows")
	}
	// Positions of bindings no longer captured are dropped.
	positions := make(map[string]*Position, len(s.bindings))
	for _, b := range s.bindings {
		if pos := all[b.StateKey]; pos != nil {
			if !slices.Equal(pos.CursorColumns, b.Cursor) {
				// The cursor columns changed: their old values mean nothing.
				s.log.WithField("binding", b.Stream.String()).Warn("the binding's cursor columns changed; its next poll reads all its rows")
				pos = &Position{Seq: pos.Seq, StartMillis: pos.StartMillis, Horizon: pos.Horizon}
			}
			positions[b.StateKey] = pos
		}
	}
	return startStream(ctx, s, positions), nil
}

// Reconnect implements sqlcapture.Database. A polled capture is never
// reconnected in the process: the engine's in-process retry replays a
// transaction by skipping the changes it already emitted, which holds for a
// replication stream (a transaction decodes the same way again) but not for
// a poll (a new snapshot may return other rows). None of Source's errors is
// Transient, so a failed poll ends the capture, and its restart resumes from
// the last checkpointed poll positions.
func (s *Source) Reconnect(context.Context) error {
	return errors.New("a polled capture is not reconnected in the process: it restarts from its last checkpoint")
}

// redescribe reads the shape of b's result again, and rebuilds b when it
// changed (a column added to a polled table, say). It reports whether it did.
func (s *Source) redescribe(ctx context.Context, b *Binding) (bool, error) {
	result, err := discovery.DescribeQuery(ctx, s.conn, s.types, b.base)
	if err != nil {
		return false, fmt.Errorf("describing the query: %w", err)
	}
	if b.sameShape(result) {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.describe(ctx, s.conn, s.types); err != nil {
		return false, err
	}
	s.log.WithField("binding", b.Stream.String()).Info("the columns of the binding's result changed; reporting its new schema")
	return true, nil
}

// DescribeStream implements sqlcapture.Database.
func (s *Source) DescribeStream(_ context.Context, stream sqlcapture.StreamID) (json.RawMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.bindings {
		if b.Stream == stream {
			return b.DocumentSchema()
		}
	}
	return nil, fmt.Errorf("%s is not a polled binding", stream)
}

// errNotBackfilled answers what the engine never asks of polled bindings.
var errNotBackfilled = errors.New("polled bindings are read by their polls, not backfilled")

// ScanChunk implements sqlcapture.Database.
func (s *Source) ScanChunk(context.Context, sqlcapture.StreamID, []byte, int64, int, func(sqlcapture.Row) error) ([]byte, bool, error) {
	return nil, false, errNotBackfilled
}

// WriteWatermark implements sqlcapture.Database.
func (s *Source) WriteWatermark(context.Context, string) error { return errNotBackfilled }
