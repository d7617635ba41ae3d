// Package postgres implements the capture engine's Database for PostgreSQL,
// and answers the Flow capture protocol's requests with it.
//
// A Database is one connected source: the query connection (through the
// SSH tunnel when one is configured) and the tables discovered on it. Its
// slot (slots.go) and the prerequisites of a capture (prerequisites.go,
// inspect.go) are settled before the engine runs; requests.go answers spec,
// discover, validate, apply and open, and capture.go runs a capture for
// either a runtime session or the capture command.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/backfill"
	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/source-postgres/pgversion"
	"pgcapture/source-postgres/replication"
	"pgcapture/sqlcapture"
	"pgcapture/sshtunnel"
)

// Database is a connected PostgreSQL source.
type Database struct {
	cfg    *config.Endpoint
	log    logrus.FieldLogger
	tunnel *sshtunnel.Tunnel
	conn   *pgx.Conn
	server pgversion.Server
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

var _ sqlcapture.Database = (*Database)(nil)

// Connect opens the query connection (through the SSH tunnel when one is
// configured) and discovers the database's tables.
func Connect(ctx context.Context, cfg *config.Endpoint, log logrus.FieldLogger) (*Database, error) {
	db := &Database{cfg: cfg, log: log}
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
		db.Close(ctx)
		return nil, err
	}
	cc, err := pgx.ParseConfig("")
	if err != nil {
		db.Close(ctx)
		return nil, err
	}
	cc.Config = *pcfg
	// Every statement is issued once per chunk or once per session, so
	// caching prepared statements buys nothing.
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	if db.conn, err = pgx.ConnectConfig(ctx, cc); err != nil {
		db.Close(ctx)
		return nil, config.ExplainConnectError(err, cfg)
	}
	if db.server, err = pgversion.Read(ctx, db.conn); err != nil {
		db.Close(ctx)
		return nil, err
	}
	if why := db.server.Unsupported(); why != "" {
		db.Close(ctx)
		return nil, errors.New(why)
	}
	if db.types, err = pgtypes.LoadRegistry(ctx, db.conn); err != nil {
		db.Close(ctx)
		return nil, fmt.Errorf("loading the database's types: %w", err)
	}
	tables, err := discovery.ListTables(ctx, db.conn, db.types, db.discoveryOptions())
	if err != nil {
		db.Close(ctx)
		return nil, fmt.Errorf("discovering tables: %w", err)
	}
	db.tables = make(map[sqlcapture.StreamID]*discovery.Table, len(tables))
	for _, t := range tables {
		db.tables[sqlcapture.StreamID{Schema: t.Schema, Table: t.Name}] = t
	}
	return db, nil
}

// Close closes the query connection and the tunnel.
func (db *Database) Close(ctx context.Context) {
	if db.conn != nil {
		db.conn.Close(ctx)
	}
	if db.tunnel != nil {
		db.tunnel.Close()
	}
}

func (db *Database) discoveryOptions() discovery.Options {
	wmSchema, wmTable := db.cfg.Watermarks()
	return discovery.Options{
		Server:           db.server,
		Publication:      db.cfg.Advanced.PublicationName,
		WatermarksSchema: wmSchema,
		WatermarksTable:  wmTable,
	}
}

func (db *Database) connConfig(replication bool) (*pgconn.Config, error) {
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

func (db *Database) watermarks() sqlcapture.StreamID {
	schema, table := db.cfg.Watermarks()
	return sqlcapture.StreamID{Schema: schema, Table: table}
}

func (db *Database) quotedWatermarks() string {
	wm := db.watermarks()
	return discovery.QuoteIdent(wm.Schema) + "." + discovery.QuoteIdent(wm.Table)
}

// prepareCapture readies the database for a capture session resuming at
// cursor: the prerequisites hold, the watermarks table exists and is
// published, and the replication slot exists and matches the cursor.
// Tables in physical are backfilled in ctid order rather than key order.
func (db *Database) prepareCapture(ctx context.Context, tables []*discovery.Table, physical map[*discovery.Table]bool, cursor string) error {
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

// StartReplication implements sqlcapture.Database.
func (db *Database) StartReplication(ctx context.Context, cursor string) (sqlcapture.ReplicationStream, error) {
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
func (db *Database) ScanChunk(ctx context.Context, stream sqlcapture.StreamID, after []byte, offset int64, limit int, emit func(sqlcapture.Row) error) ([]byte, bool, error) {
	t := db.chunks[stream]
	if t == nil {
		return nil, false, fmt.Errorf("table %s is not captured", stream)
	}
	return db.scanner.ScanChunk(ctx, t, after, offset, limit, emit)
}

// DescribeStream implements sqlcapture.Database: it rediscovers the table
// (reloading types, which may be new), rebuilds its chunk queries for its
// current columns, and returns its document schema.
func (db *Database) DescribeStream(ctx context.Context, stream sqlcapture.StreamID) (json.RawMessage, error) {
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
func (db *Database) WriteWatermark(ctx context.Context, id string) error {
	_, err := db.conn.Exec(ctx, "INSERT INTO "+db.quotedWatermarks()+" (slot, watermark) VALUES ($1, $2) ON CONFLICT (slot) DO UPDATE SET watermark = EXCLUDED.watermark",
		db.cfg.Advanced.SlotName, id)
	return err
}
