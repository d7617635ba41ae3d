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
	"net"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/backfill"
	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/faults"
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
	// mode is who runs the capture, which the slot's checks and recovery
	// advice depend on.
	mode Mode
	// standby is whether the server is a physical standby (in recovery),
	// where nothing can be written: fences are then taken at WAL positions
	// (standby.go).
	standby bool

	// Set by prepareCapture.
	chunks map[sqlcapture.StreamID]*backfill.Table
	// described holds tables whose schema was reported once: reporting it
	// again means the table changed and is rediscovered.
	described map[sqlcapture.StreamID]bool
	scanner   *backfill.Scanner
	xids      *backfill.CommittedXIDs
	// workers read backfill chunks on connections beyond the query
	// connection, which is the first: workers[i] is connection i+1,
	// opened when first needed (advanced.backfill_connections).
	workers []*worker
	// replicationPID is the server process of the last replication
	// connection, which a reconnecting capture ends if it still holds the
	// slot.
	replicationPID uint32
	// stream is the last replication stream started (it takes a standby's
	// fences), and textOnly is set for the rest of the process once a binary stream met a column it
	// cannot receive in binary (see replication.ErrTextNeeded).
	stream   *replication.Stream
	textOnly bool
}

var _ sqlcapture.RangeDatabase = (*Database)(nil)

// worker is one more connection that reads backfill chunks.
type worker struct {
	conn    *pgx.Conn
	scanner *backfill.Scanner
}

// Connect opens the query connection (through the SSH tunnel when one is
// configured) and discovers the database's tables.
func Connect(ctx context.Context, cfg *config.Endpoint, log logrus.FieldLogger) (*Database, error) {
	db := &Database{cfg: cfg, log: log}
	if err := db.open(ctx); err != nil {
		db.Close(ctx)
		return nil, err
	}
	var err error
	if db.server, err = pgversion.Read(ctx, db.conn); err != nil {
		db.Close(ctx)
		return nil, err
	}
	if why := db.server.Unsupported(); why != "" {
		db.Close(ctx)
		return nil, errors.New(why)
	}
	db.logCompatibilityNotes()
	if err := db.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&db.standby); err != nil {
		db.Close(ctx)
		return nil, fmt.Errorf("checking whether the server is a standby: %w", err)
	}
	if db.types, err = db.loadRegistry(ctx); err != nil {
		db.Close(ctx)
		return nil, err
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

// open opens the tunnel, if one is configured, and the query connection.
func (db *Database) open(ctx context.Context) error {
	if f := db.cfg.NetworkTunnel; f != nil && f.SSHForwarding != nil {
		t, err := sshtunnel.Open(ctx, sshtunnel.Config{
			Endpoint:   f.SSHForwarding.SSHEndpoint,
			PrivateKey: f.SSHForwarding.PrivateKey,
			HostKey:    f.SSHForwarding.HostKey,
			// Probes of the SSH server notice a dead tunnel within two
			// intervals, the network timeout.
			KeepaliveInterval: db.cfg.NetworkTimeout() / 2,
			Logger:            db.log,
		})
		if err != nil {
			return err
		}
		db.tunnel = t
	}
	conn, err := db.connect(ctx)
	if err != nil {
		return err
	}
	db.conn = conn
	return nil
}

// connect opens a query connection (through the tunnel, if one is open).
func (db *Database) connect(ctx context.Context) (*pgx.Conn, error) {
	pcfg, err := db.connConfig(false)
	if err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cc.Config = *pcfg
	// Every statement is issued once per chunk or once per session, so
	// caching prepared statements buys nothing.
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, config.ExplainConnectError(err, db.cfg)
	}
	return conn, nil
}

// Reconnect implements sqlcapture.Database: it closes the query connection
// and the tunnel, which may be what failed, and opens new ones.
func (db *Database) Reconnect(ctx context.Context) error {
	db.Close(ctx)
	db.conn, db.tunnel = nil, nil
	if err := db.open(ctx); err != nil {
		return faults.Classify(fmt.Errorf("reconnecting to the database: %w", err))
	}
	if db.xids != nil {
		db.scanner = backfill.NewScanner(db.conn.PgConn(), db.xids, db.log)
	}
	return nil
}

// classify marks err transient if reconnecting may cure it. A failure that
// closed the query connection is the connection's: pgconn's errors for a
// connection it closed say only "conn closed".
func (db *Database) classify(err error) error {
	return classifyOn(db.conn, err)
}

// classifyOn classifies a failure of a query on conn.
func classifyOn(conn *pgx.Conn, err error) error {
	if err == nil {
		return nil
	}
	if _, isServer := errors.AsType[*pgconn.PgError](err); !isServer && !errors.Is(err, context.Canceled) &&
		conn != nil && conn.IsClosed() {
		return sqlcapture.Transient(err)
	}
	return faults.Classify(err)
}

// Close closes the query connection, the backfill workers' and the tunnel.
func (db *Database) Close(ctx context.Context) {
	for _, w := range db.workers {
		if w != nil {
			closeCtx, cancel := context.WithTimeout(ctx, time.Second)
			w.conn.Close(closeCtx)
			cancel()
		}
	}
	clear(db.workers)
	if db.conn != nil {
		// A dead connection would hold Close up until the network timeout.
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
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
		queryParams(db.cfg, params)
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
	return pgx.Identifier{wm.Schema, wm.Table}.Sanitize()
}

// prepareCapture readies the database for a capture session resuming at
// cursor: the prerequisites hold, the watermarks table exists and is
// published, and the replication slot exists and matches the cursor.
// Tables in physical are backfilled in ctid order rather than key order.
// reset lets a new capture drop an existing slot (see ensureSlot).
func (db *Database) prepareCapture(ctx context.Context, tables []*discovery.Table, physical map[*discovery.Table]bool, cursor string, reset bool) error {
	if err := db.ensurePrerequisites(ctx, tables); err != nil {
		return err
	}
	if err := db.ensureSlot(ctx, cursor, reset); err != nil {
		return err
	}
	db.xids = backfill.NewCommittedXIDs()
	db.scanner = backfill.NewScanner(db.conn.PgConn(), db.xids, db.log)
	db.workers = make([]*worker, max(db.cfg.Advanced.BackfillConnections-1, 0))
	db.chunks = make(map[sqlcapture.StreamID]*backfill.Table, len(tables))
	for _, t := range tables {
		bt, err := backfill.NewTable(t, physical[t], db.cfg.Advanced.SourceTag)
		if err != nil {
			return err
		}
		db.chunks[sqlcapture.StreamID{Schema: t.Schema, Table: t.Name}] = bt
	}
	return nil
}

// StartReplication implements sqlcapture.Database.
func (db *Database) StartReplication(ctx context.Context, cursor, acknowledged string) (sqlcapture.ReplicationStream, error) {
	var start, acked pglogrepl.LSN
	if cursor != "" {
		var err error
		if start, err = pglogrepl.ParseLSN(cursor); err != nil {
			return nil, fmt.Errorf("the capture's checkpointed cursor %q is not an LSN: %w", cursor, err)
		}
	}
	if acknowledged != "" {
		var err error
		if acked, err = pglogrepl.ParseLSN(acknowledged); err != nil {
			return nil, fmt.Errorf("the capture's acknowledged cursor %q is not an LSN: %w", acknowledged, err)
		}
	}
	if err := db.endStaleReplication(ctx); err != nil {
		return nil, err
	}
	pcfg, err := db.connConfig(true)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, faults.Classify(fmt.Errorf("opening the replication connection: %w", config.ExplainConnectError(err, db.cfg)))
	}
	db.replicationPID = conn.PID()
	tables := make(map[sqlcapture.StreamID]*discovery.Table, len(db.chunks))
	for id := range db.chunks {
		tables[id] = db.tables[id]
	}
	host, port := db.cfg.HostPort()
	s, err := replication.Start(ctx, conn, uint64(start), replication.Options{
		Slot:         db.cfg.Advanced.SlotName,
		Publication:  db.cfg.Advanced.PublicationName,
		Tables:       tables,
		Watermarks:   db.watermarks(),
		Types:        db.types,
		Committed:    db.xids.Committed,
		Logger:       db.log,
		Timeout:      db.cfg.NetworkTimeout(),
		Server:       net.JoinHostPort(host, strconv.Itoa(int(port))),
		Acknowledged: uint64(acked),
		SourceTag:    db.cfg.Advanced.SourceTag,
		Streaming:    db.server.Has(pgversion.StreamingInProgress),
		Binary:       db.binaryReplication(tables),
	})
	if err != nil {
		conn.Close(ctx)
		return nil, faults.Classify(err)
	}
	db.stream = s
	return s, nil
}

// binaryReplication decides whether the replication stream of the tables
// receives values in binary: on PostgreSQL 14+ (which added pgoutput's
// binary option) unless the configuration says text, when every captured
// column can be received in binary, and unless a binary stream of this
// process already met one that could not (a column added since discovery).
func (db *Database) binaryReplication(tables map[sqlcapture.StreamID]*discovery.Table) bool {
	if db.stream != nil && errors.Is(db.stream.Err(), replication.ErrTextNeeded) && !db.textOnly {
		db.textOnly = true
		db.log.Info("streaming values in text from now on: a captured table gained a column that the binary stream cannot receive")
	}
	if db.textOnly || db.cfg.Advanced.ReplicationFormat == config.ReplicationText || db.server.Major() < 14 {
		return false
	}
	if ok, why := replication.BinarySafe(tables); !ok {
		db.log.WithField("reason", why).Info("streaming values in text: a captured column's type is not received in binary")
		return false
	}
	db.log.Info("streaming values in binary")
	return true
}

// endStaleReplication ends the server process of this capture's previous
// replication connection if it still holds the slot: after a partition or
// a pause the server may not notice for wal_sender_timeout (a minute by
// default) that the connection is gone, and until then the slot refuses a
// new one. A user may end its own role's sessions; if this fails, starting
// replication fails with "replication slot is active", which is retried.
func (db *Database) endStaleReplication(ctx context.Context) error {
	if db.replicationPID == 0 {
		return nil
	}
	var ended bool
	err := db.conn.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(active_pid)), false)
		FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2`,
		db.cfg.Advanced.SlotName, int32(db.replicationPID)).Scan(&ended)
	if err != nil {
		if _, isServer := errors.AsType[*pgconn.PgError](err); isServer {
			db.log.WithError(err).Debug("could not end the previous replication connection's server process")
			return nil
		}
		return db.classify(fmt.Errorf("looking for the previous replication connection: %w", err))
	}
	if ended {
		db.log.WithField("pid", db.replicationPID).Info("ended the server process of the previous replication connection, which still held the slot")
	}
	return nil
}

// ScanChunk implements sqlcapture.Database.
func (db *Database) ScanChunk(ctx context.Context, stream sqlcapture.StreamID, after []byte, offset int64, limit int, emit func(sqlcapture.Row) error) ([]byte, bool, error) {
	return db.ScanRange(ctx, 0, stream, after, nil, offset, limit, emit)
}

// ScanRange implements sqlcapture.RangeDatabase: connection 0 is the query
// connection, the others are opened when first used.
func (db *Database) ScanRange(ctx context.Context, conn int, stream sqlcapture.StreamID, after, until []byte, offset int64, limit int, emit func(sqlcapture.Row) error) ([]byte, bool, error) {
	t := db.chunks[stream]
	if t == nil {
		return nil, false, fmt.Errorf("table %s is not captured", stream)
	}
	scanner, pc := db.scanner, db.conn
	if conn > 0 {
		w, err := db.worker(ctx, conn)
		if err != nil {
			return nil, false, err
		}
		scanner, pc = w.scanner, w.conn
	}
	// A failure to emit is the output's, never the connection's.
	var emitErr error
	next, done, err := scanner.ScanChunk(ctx, t, after, until, offset, limit, func(r sqlcapture.Row) error {
		emitErr = emit(r)
		return emitErr
	})
	if err != nil && emitErr == nil {
		err = classifyOn(pc, err)
	}
	return next, done, err
}

// worker returns backfill connection conn (1 or more), opening it if need
// be. Each is used by one chunk at a time, so only creating the list
// needs the engine's round to be single-threaded, as it is: planRound
// knows the connection count before any chunk starts.
func (db *Database) worker(ctx context.Context, conn int) (*worker, error) {
	if conn > len(db.workers) {
		return nil, fmt.Errorf("backfill connection %d is beyond advanced.backfill_connections (%d)", conn+1, len(db.workers)+1)
	}
	w := db.workers[conn-1]
	if w != nil {
		return w, nil
	}
	pc, err := db.connect(ctx)
	if err != nil {
		return nil, faults.Classify(fmt.Errorf("opening backfill connection %d: %w", conn+1, err))
	}
	w = &worker{conn: pc, scanner: backfill.NewScanner(pc.PgConn(), db.xids, db.log)}
	db.workers[conn-1] = w
	return w, nil
}

// SplitStream implements sqlcapture.RangeDatabase.
func (db *Database) SplitStream(ctx context.Context, stream sqlcapture.StreamID, after []byte, n int) ([][]byte, error) {
	t := db.chunks[stream]
	if t == nil {
		return nil, fmt.Errorf("table %s is not captured", stream)
	}
	bounds, err := db.scanner.Split(ctx, t, after, n)
	return bounds, db.classify(err)
}

// DescribeStream implements sqlcapture.Database: it rediscovers the table
// (reloading types, which may be new), rebuilds its chunk queries for its
// current columns, and returns its document schema.
func (db *Database) DescribeStream(ctx context.Context, stream sqlcapture.StreamID) (json.RawMessage, error) {
	schema, err := db.describeStream(ctx, stream)
	return schema, db.classify(err)
}

func (db *Database) describeStream(ctx context.Context, stream sqlcapture.StreamID) (json.RawMessage, error) {
	t := db.tables[stream]
	if cur := db.chunks[stream]; cur != nil && db.described[stream] {
		types, err := db.loadRegistry(ctx)
		if err != nil {
			return nil, err
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
		bt, err := backfill.NewTable(t, cur.Physical(), db.cfg.Advanced.SourceTag)
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
	return db.documentSchema(t)
}

// WriteWatermark implements sqlcapture.Database. On a standby, which
// cannot be written, it fences at the WAL position the standby has
// replayed instead (standby.go).
func (db *Database) WriteWatermark(ctx context.Context, id string) error {
	if db.standby {
		return db.fenceAtReplay(ctx, id)
	}
	_, err := db.conn.Exec(ctx, "INSERT INTO "+db.quotedWatermarks()+" (slot, watermark) VALUES ($1, $2) ON CONFLICT (slot) DO UPDATE SET watermark = EXCLUDED.watermark",
		db.cfg.Advanced.SlotName, id)
	return db.classify(err)
}
