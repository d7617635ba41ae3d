package replication

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// The benchmarks decode real pgoutput messages: a server decodes a
// transaction with pg_logical_slot_peek_binary_changes, under the session
// settings the connector's replication connection uses, and the benchmark
// replays its messages through Stream.decode as many times as it needs.

const benchSetup = `
CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
CREATE TABLE public.bench (
	id bigint PRIMARY KEY, n integer NOT NULL, s text NOT NULL,
	ts timestamptz NOT NULL, amount numeric(12,2) NOT NULL, doc jsonb);
CREATE TABLE public.bench_full (LIKE public.bench INCLUDING ALL);
ALTER TABLE public.bench_full REPLICA IDENTITY FULL;
CREATE PUBLICATION bench_pub FOR ALL TABLES;`

// benchRows is the size of the decoded transactions.
const benchRows = 1000

const benchInsert = `INSERT INTO public.%s (id, n, s, ts, amount, doc)
SELECT g, (g * 7919) %% 100000, substr(md5(g::text), 1, 24),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1234567 microseconds',
       round((g %% 100000) * 1.37, 2), jsonb_build_object('k', g %% 1000, 'tag', 'tag-' || g %% 97)
FROM generate_series(1::bigint, %d) g`

// walMessage is one pgoutput message and the LSN it was sent at.
type walMessage struct {
	lsn  uint64
	data []byte
}

// benchSource is what a Stream needs to decode the captured transactions.
type benchSource struct {
	types  *pgtypes.Registry
	tables map[sqlcapture.StreamID]*discovery.Table
	// Each transaction: Begin, Relation, its row messages, Commit.
	inserts, updates []walMessage
	// binaryInserts are the inserts with binary values (PostgreSQL 14+).
	binaryInserts []walMessage
}

func newBenchSource(b *testing.B) *benchSource {
	ctx := context.Background()
	// Commits must be flushed when they return: SQL decoding reads only
	// flushed WAL.
	pg := testsupport.StartPostgres(b, testsupport.Options{Settings: map[string]string{"synchronous_commit": "on"}})
	db := pg.NewDatabase(b)
	pg.Exec(b, db, benchSetup)
	// Not with the setup: a slot cannot be created in a transaction that wrote.
	pg.Exec(b, db, "SELECT pg_create_logical_replication_slot('bench', 'pgoutput')")
	pg.Exec(b, db, fmt.Sprintf(benchInsert, "bench", benchRows))
	pg.Exec(b, db, fmt.Sprintf(benchInsert, "bench_full", benchRows))
	pg.Exec(b, db, "UPDATE public.bench_full SET n = n + 1, doc = doc || '{\"u\": 1}'")

	conn := pg.ConnectWith(b, db, pgtypes.SessionParams())

	src := &benchSource{tables: make(map[sqlcapture.StreamID]*discovery.Table)}
	var err error
	if src.types, err = pgtypes.LoadRegistry(ctx, conn); err != nil {
		b.Fatal(err)
	}
	tables, err := discovery.ListTables(ctx, conn, src.types, discovery.Options{
		Publication: "bench_pub", WatermarksSchema: "public", WatermarksTable: "flow_watermarks",
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range tables {
		src.tables[sqlcapture.StreamID{Schema: t.Schema, Table: t.Name}] = t
	}

	txns := peekTxns(b, conn, "false")
	// The setup's transactions: the two inserts and the update.
	if len(txns) != 3 {
		b.Fatalf("decoded %d transactions, want 3", len(txns))
	}
	// pgoutput describes a relation once per session: the update's Relation
	// message went out with the insert before it.
	if !isRelation(txns[1][1]) {
		b.Fatalf("the second transaction's second message is %q, not a Relation", txns[1][1].data[0])
	}
	src.inserts = txns[0]
	src.updates = append([]walMessage{txns[2][0], txns[1][1]}, txns[2][1:]...)
	if conn.PgConn().ParameterStatus("server_version") >= "14" {
		src.binaryInserts = peekTxns(b, conn, "true")[0]
	}
	return src
}

// peekTxns returns the slot's transactions, decoded with binary values or
// not.
func peekTxns(b *testing.B, conn *pgx.Conn, binary string) [][]walMessage {
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes('bench', NULL, NULL,
		'proto_version', '1', 'publication_names', 'bench_pub', 'binary', $1)`, binary)
	if err != nil {
		b.Fatal(err)
	}
	var txns [][]walMessage
	for rows.Next() {
		var lsn string
		var data []byte
		if err := rows.Scan(&lsn, &data); err != nil {
			b.Fatal(err)
		}
		at, err := pglogrepl.ParseLSN(lsn)
		if err != nil {
			b.Fatal(err)
		}
		if pglogrepl.MessageType(data[0]) == pglogrepl.MessageTypeBegin {
			txns = append(txns, nil)
		}
		txns[len(txns)-1] = append(txns[len(txns)-1], walMessage{uint64(at), data})
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return txns
}

// stream returns a Stream that decodes the source's messages, as Start would
// set it up, without a connection.
func (src *benchSource) stream() *Stream { return src.streamIn(false) }

// streamIn is stream, for binary messages when binary is set.
func (src *benchSource) streamIn(binary bool) *Stream {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return newStream(nil, 0, Options{
		Slot:       "bench",
		Tables:     src.tables,
		Watermarks: sqlcapture.StreamID{Schema: "public", Table: "flow_watermarks"},
		Types:      src.types,
		Logger:     log,
		Binary:     binary,
	})
}

// isRelation reports whether a message is a Relation message.
func isRelation(m walMessage) bool {
	return pglogrepl.MessageType(m.data[0]) == pglogrepl.MessageTypeRelation
}

// decodeTxn decodes a transaction's messages, skipping its Relation message
// after the first time, as a stream would: pgoutput sends it once.
func decodeTxn(b *testing.B, s *Stream, txn []walMessage) {
	for _, m := range txn {
		if isRelation(m) && len(s.relations.byID) > 0 {
			continue
		}
		if err := s.decode(m.lsn, m.data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode measures a WAL message becoming a change event: the
// pgoutput decoding, the document, the key, and the hand-over to the engine.
func BenchmarkDecode(b *testing.B) {
	src := newBenchSource(b)
	perRow := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRows), "ns/row")
	}

	// Only the parsing of the row messages, which reuses its buffers.
	b.Run("decodeRow", func(b *testing.B) {
		var m rowMessage
		b.ReportAllocs()
		for b.Loop() {
			for _, msg := range src.inserts {
				if pglogrepl.MessageType(msg.data[0]) != pglogrepl.MessageTypeInsert {
					continue
				}
				if err := decodeRow(msg.data, &m); err != nil {
					b.Fatal(err)
				}
			}
		}
		perRow(b)
	})

	// Events handed to a consumer goroutine in batches, as in the connector.
	for _, c := range []struct {
		name string
		txn  []walMessage
	}{
		{"insert", src.inserts},
		{"update-replica-identity-full", src.updates},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := src.stream()
			done := make(chan struct{})
			defer close(done)
			go func() {
				for {
					select {
					case batch := <-s.events:
						s.Release(batch)
					case <-done:
						return
					}
				}
			}()
			b.ReportAllocs()
			for b.Loop() {
				decodeTxn(b, s, c.txn)
			}
			perRow(b)
		})
	}

	// The same inserts with the events drained by the decoding goroutine
	// itself: the difference to "insert" is the cost of handing the batches
	// to another goroutine. In binary, the difference to text is the cost
	// of rewriting binary values into their text.
	for _, c := range []struct {
		name   string
		binary bool
		txn    []walMessage
	}{
		{"insert-same-goroutine", false, src.inserts},
		{"insert-same-goroutine-binary", true, src.binaryInserts},
	} {
		if c.txn == nil {
			continue // binary values need PostgreSQL 14
		}
		b.Run(c.name, func(b *testing.B) { benchSameGoroutine(b, src.streamIn(c.binary), c.txn) })
	}
}

// benchSameGoroutine decodes a transaction and drains its events on one
// goroutine.
func benchSameGoroutine(b *testing.B, s *Stream, txn []walMessage) {
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range txn {
			if isRelation(m) && len(s.relations.byID) > 0 {
				continue
			}
			if err := s.decode(m.lsn, m.data); err != nil {
				b.Fatal(err)
			}
			for len(s.events) > 0 {
				s.Release(<-s.events)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRows), "ns/row")
}
