package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/backfill"
	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/source-postgres/replication"
	"pgcapture/sqlcapture"
	"pgcapture/sshtunnel"
)

// database is a connected PostgreSQL source. It implements sqlcapture.Database.
type database struct {
	cfg    *config.Endpoint
	log    logrus.FieldLogger
	tunnel *sshtunnel.Tunnel
	conn   *pgx.Conn
	types  *pgtypes.Registry
	tables map[sqlcapture.StreamID]*discovery.Table

	// Set by prepareCapture.
	chunks map[sqlcapture.StreamID]*backfill.Table
	// described holds tables whose schema was reported once: reporting it
	// again means the table changed and is rediscovered.
	described map[sqlcapture.StreamID]bool
	scanner   *backfill.Scanner
	xids      *backfill.CommittedXIDs
}

// connect opens the query connection (through the SSH tunnel when one is
// configured) and discovers the database's tables.
func connect(ctx context.Context, cfg *config.Endpoint, log logrus.FieldLogger) (*database, error) {
	db := &database{cfg: cfg, log: log}
	if f := cfg.NetworkTunnel; f != nil && f.SSHForwarding != nil {
		t, err := sshtunnel.Open(ctx, sshtunnel.Config{
			Endpoint:   f.SSHForwarding.SSHEndpoint,
			PrivateKey: f.SSHForwarding.PrivateKey,
			HostKey:    f.SSHForwarding.HostKey,
			Logger:     log,
		})
		if err != nil {
			return nil, err
		}
		db.tunnel = t
	}
	pcfg, err := db.connConfig(false)
	if err != nil {
		db.close(ctx)
		return nil, err
	}
	cc, err := pgx.ParseConfig("")
	if err != nil {
		db.close(ctx)
		return nil, err
	}
	cc.Config = *pcfg
	// Every statement is issued once per chunk or once per session, so
	// caching prepared statements buys nothing.
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	if db.conn, err = pgx.ConnectConfig(ctx, cc); err != nil {
		db.close(ctx)
		return nil, config.ExplainConnectError(err, cfg)
	}
	if db.types, err = pgtypes.LoadRegistry(ctx, db.conn); err != nil {
		db.close(ctx)
		return nil, fmt.Errorf("loading the database's types: %w", err)
	}
	tables, err := discovery.ListTables(ctx, db.conn, db.types, db.discoveryOptions())
	if err != nil {
		db.close(ctx)
		return nil, fmt.Errorf("discovering tables: %w", err)
	}
	db.tables = make(map[sqlcapture.StreamID]*discovery.Table, len(tables))
	for _, t := range tables {
		db.tables[sqlcapture.StreamID{Schema: t.Schema, Table: t.Name}] = t
	}
	return db, nil
}

func (db *database) discoveryOptions() discovery.Options {
	wmSchema, wmTable := db.cfg.Watermarks()
	return discovery.Options{
		Publication:      db.cfg.Advanced.PublicationName,
		WatermarksSchema: wmSchema,
		WatermarksTable:  wmTable,
	}
}

func (db *database) connConfig(replication bool) (*pgconn.Config, error) {
	params := pgtypes.SessionParams()
	if replication {
		params["replication"] = "database"
	} else {
		// Logical decoding sends only flushed WAL, so a watermark committed
		// under synchronous_commit=off would wait for the WAL writer (up to
		// 200 ms a fence), and under a synchronous standby for the standby.
		// The query connection writes nothing but watermarks.
		params["synchronous_commit"] = "local"
	}
	var dial config.DialFunc
	if db.tunnel != nil {
		dial = db.tunnel.DialContext
	}
	return db.cfg.ConnConfig(params, dial)
}

func (db *database) close(ctx context.Context) {
	if db.conn != nil {
		db.conn.Close(ctx)
	}
	if db.tunnel != nil {
		db.tunnel.Close()
	}
}

func (db *database) watermarks() sqlcapture.StreamID {
	schema, table := db.cfg.Watermarks()
	return sqlcapture.StreamID{Schema: schema, Table: table}
}

func (db *database) quotedWatermarks() string {
	wm := db.watermarks()
	return discovery.QuoteIdent(wm.Schema) + "." + discovery.QuoteIdent(wm.Table)
}

// prepareCapture readies the database for a capture session resuming at
// cursor: the prerequisites hold, the watermarks table exists and is
// published, and the replication slot exists and matches the cursor.
// Tables in physical are backfilled in ctid order rather than key order.
func (db *database) prepareCapture(ctx context.Context, tables []*discovery.Table, physical map[*discovery.Table]bool, cursor string) error {
	if err := db.ensurePrerequisites(ctx, tables); err != nil {
		return err
	}
	if err := db.ensureSlot(ctx, cursor); err != nil {
		return err
	}
	db.xids = backfill.NewCommittedXIDs()
	db.scanner = backfill.NewScanner(db.conn.PgConn(), db.xids, db.log)
	db.chunks = make(map[sqlcapture.StreamID]*backfill.Table, len(tables))
	for _, t := range tables {
		bt, err := backfill.NewTable(t, physical[t])
		if err != nil {
			return err
		}
		db.chunks[sqlcapture.StreamID{Schema: t.Schema, Table: t.Name}] = bt
	}
	return nil
}

const slotRecovery = "to recover, re-backfill every binding (bump their backfill counters, or reset the capture's state): the changes made while the slot was unusable cannot be replayed"

func slotLostError(slot string) error {
	return fmt.Errorf("replication slot %q was invalidated by PostgreSQL (wal_status 'lost', usually max_slot_wal_keep_size): %s, after dropping the slot", slot, slotRecovery)
}

// explainFailure translates a capture failure that the replication slot
// explains: PostgreSQL ends the stream of a slot it invalidates (or that is
// dropped) with a bare "terminating connection", which says nothing of why.
func (db *database) explainFailure(ctx context.Context, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	slot := db.cfg.Advanced.SlotName
	var walStatus string
	qerr := db.conn.QueryRow(ctx, "SELECT COALESCE(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&walStatus)
	// PostgreSQL ends the walsender of a slot it invalidates before marking
	// the slot lost, so a slot still 'unreserved' is looked at again.
	for qerr == nil && walStatus == "unreserved" && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		qerr = db.conn.QueryRow(ctx, "SELECT COALESCE(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&walStatus)
	}
	switch {
	case errors.Is(qerr, pgx.ErrNoRows):
		return fmt.Errorf("replication slot %q was dropped while the capture was running: %s (%w)", slot, slotRecovery, err)
	case qerr == nil && walStatus == "lost":
		return fmt.Errorf("%w (%w)", slotLostError(slot), err)
	}
	return err
}

// ensureSlot checks the replication slot against the capture's cursor. A
// new capture (no cursor) gets a fresh slot; a resumed one needs its slot
// intact and not ahead of the cursor, or changes would be silently lost.
func (db *database) ensureSlot(ctx context.Context, cursor string) error {
	slot := db.cfg.Advanced.SlotName
	var (
		dbName, plugin, walStatus, confirmed string
		activePID                            *int32
	)
	err := db.conn.QueryRow(ctx, `SELECT database, COALESCE(plugin, ''), COALESCE(wal_status, ''),
			COALESCE(confirmed_flush_lsn::text, ''), active_pid
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&dbName, &plugin, &walStatus, &confirmed, &activePID)
	missing := errors.Is(err, pgx.ErrNoRows)
	if err != nil && !missing {
		return fmt.Errorf("looking up replication slot %q: %w", slot, err)
	}
	switch {
	case !missing && dbName != db.cfg.Database:
		return fmt.Errorf("replication slot %q belongs to database %q, not %q: choose another advanced.slotName for this capture", slot, dbName, db.cfg.Database)
	case !missing && activePID != nil:
		return fmt.Errorf("replication slot %q is in use by another process (pid %d): is another capture running with the same advanced.slotName?", slot, *activePID)
	case !missing && plugin != "pgoutput":
		return fmt.Errorf("replication slot %q uses the %q plugin, not pgoutput: drop it or choose another advanced.slotName", slot, plugin)
	case missing && cursor != "":
		return fmt.Errorf("replication slot %q no longer exists, but the capture's checkpoint resumes from %s: %s", slot, cursor, slotRecovery)
	case !missing && walStatus == "lost":
		return slotLostError(slot)
	case cursor == "":
		// A new capture starts its stream where its backfills start: now.
		if !missing {
			if _, err := db.conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
				return fmt.Errorf("dropping replication slot %q to start a new capture: %w", slot, err)
			}
		}
		if _, err := db.conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
			return fmt.Errorf("creating replication slot %q: %w", slot, err)
		}
		db.log.WithField("slot", slot).Info("created replication slot")
		return nil
	}
	want, err := pglogrepl.ParseLSN(cursor)
	if err != nil {
		return fmt.Errorf("the capture's checkpointed cursor %q is not an LSN: %w", cursor, err)
	}
	have, err := pglogrepl.ParseLSN(confirmed)
	if err != nil {
		return fmt.Errorf("replication slot %q has no confirmed position", slot)
	}
	if have > want {
		return fmt.Errorf("replication slot %q has been advanced to %s, past the capture's checkpoint at %s, so the changes in between are gone: %s", slot, have, want, slotRecovery)
	}
	return nil
}

// StartReplication implements sqlcapture.Database.
func (db *database) StartReplication(ctx context.Context, cursor string) (sqlcapture.ReplicationStream, error) {
	var start pglogrepl.LSN
	if cursor != "" {
		var err error
		if start, err = pglogrepl.ParseLSN(cursor); err != nil {
			return nil, fmt.Errorf("the capture's checkpointed cursor %q is not an LSN: %w", cursor, err)
		}
	}
	pcfg, err := db.connConfig(true)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("opening the replication connection: %w", config.ExplainConnectError(err, db.cfg))
	}
	tables := make(map[sqlcapture.StreamID]*discovery.Table, len(db.chunks))
	for id := range db.chunks {
		tables[id] = db.tables[id]
	}
	s, err := replication.Start(ctx, conn, uint64(start), replication.Options{
		Slot:        db.cfg.Advanced.SlotName,
		Publication: db.cfg.Advanced.PublicationName,
		Tables:      tables,
		Watermarks:  db.watermarks(),
		Types:       db.types,
		Committed:   db.xids.Committed,
		Logger:      db.log,
	})
	if err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return s, nil
}

// ScanChunk implements sqlcapture.Database.
func (db *database) ScanChunk(ctx context.Context, stream sqlcapture.StreamID, after []byte, offset int64, limit int, emit func(sqlcapture.Row) error) ([]byte, bool, error) {
	t := db.chunks[stream]
	if t == nil {
		return nil, false, fmt.Errorf("table %s is not captured", stream)
	}
	return db.scanner.ScanChunk(ctx, t, after, offset, limit, emit)
}

// DescribeStream implements sqlcapture.Database: it rediscovers the table
// (reloading types, which may be new), rebuilds its chunk queries for its
// current columns, and returns its document schema.
func (db *database) DescribeStream(ctx context.Context, stream sqlcapture.StreamID) (json.RawMessage, error) {
	t := db.tables[stream]
	if cur := db.chunks[stream]; cur != nil && db.described[stream] {
		types, err := pgtypes.LoadRegistry(ctx, db.conn)
		if err != nil {
			return nil, fmt.Errorf("loading the database's types: %w", err)
		}
		tables, err := discovery.ListTables(ctx, db.conn, types, db.discoveryOptions())
		if err != nil {
			return nil, err
		}
		t = nil
		for _, nt := range tables {
			if nt.Schema == stream.Schema && nt.Name == stream.Table {
				t = nt
			}
		}
		if t == nil {
			return nil, fmt.Errorf("table %s no longer exists (or is no longer readable)", stream)
		}
		bt, err := backfill.NewTable(t, cur.Physical())
		if err != nil {
			return nil, err
		}
		db.tables[stream], db.chunks[stream] = t, bt
	}
	if db.described == nil {
		db.described = make(map[sqlcapture.StreamID]bool)
	}
	db.described[stream] = true
	if t == nil {
		return nil, fmt.Errorf("table %s is not captured", stream)
	}
	return t.DocumentSchema()
}

// WriteWatermark implements sqlcapture.Database.
func (db *database) WriteWatermark(ctx context.Context, id string) error {
	_, err := db.conn.Exec(ctx, "INSERT INTO "+db.quotedWatermarks()+" (slot, watermark) VALUES ($1, $2) ON CONFLICT (slot) DO UPDATE SET watermark = EXCLUDED.watermark",
		db.cfg.Advanced.SlotName, id)
	return err
}
