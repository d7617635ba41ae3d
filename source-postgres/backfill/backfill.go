// Package backfill reads tables in key-ordered chunks: the queries, their
// snapshots, and the conversion of each row to a document.
package backfill

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/document"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
)

// Table is a table prepared for chunked reads.
type Table struct {
	info    *discovery.Table
	doc     *document.Table
	columns []column
	// keys are the key columns in key order, as indexes into columns.
	keys []int
	// first reads the first chunk; next reads the chunk after a key.
	first, next string
}

type column struct {
	name  []byte // JSON-encoded name and colon
	typ   *pgtypes.Type
	info  *discovery.Column
	isKey bool
}

// NewTable prepares the chunk queries of a keyed table.
func NewTable(t *discovery.Table) (*Table, error) {
	if len(t.Key) == 0 {
		return nil, fmt.Errorf("table %s has no primary key or usable unique index to backfill it in key order", t.QuotedName())
	}
	bt := &Table{info: t, doc: document.NewTable(t.Schema, t.Name)}
	var selects []string
	for _, c := range t.Columns {
		if c.Generated {
			// The replication stream does not carry generated columns, so
			// neither do backfilled rows: both paths emit the same fields.
			continue
		}
		bt.columns = append(bt.columns, column{name: document.FieldName(c.Name), typ: c.JSONType(), info: c})
		selects = append(selects, discovery.QuoteIdent(c.Name))
	}
	var order, params []string
	for i, name := range t.Key {
		idx := -1
		for j := range bt.columns {
			if bt.columns[j].info.Name == name {
				idx = j
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("key column %q of table %s is not a readable column", name, t.QuotedName())
		}
		bt.columns[idx].isKey = true
		bt.keys = append(bt.keys, idx)
		order = append(order, bt.columns[idx].info.KeyOrderExpr())
		params = append(params, bt.columns[idx].info.KeyParamExpr(i+1))
	}
	head := "SELECT " + strings.Join(selects, ", ") + " FROM " + t.QuotedName()
	tail := " ORDER BY " + strings.Join(order, ", ") + " LIMIT "
	bt.first = head + tail
	bt.next = head + " WHERE (" + strings.Join(order, ", ") + ") > (" + strings.Join(params, ", ") + ")" + tail
	return bt, nil
}

// Scanner reads chunks over one connection.
type Scanner struct {
	conn *pgconn.PgConn
	xids *CommittedXIDs
	log  logrus.FieldLogger

	doc, key []byte
}

// NewScanner reads chunks over conn, under snapshots that see every
// transaction recorded in xids.
func NewScanner(conn *pgconn.PgConn, xids *CommittedXIDs, log logrus.FieldLogger) *Scanner {
	return &Scanner{conn: conn, xids: xids, log: log}
}

// visibilityWait bounds how long a chunk waits for the snapshot to see the
// transactions the stream has delivered.
const visibilityWait = 10 * time.Minute

// ScanChunk reads up to limit rows of t with keys greater than after, in key
// order, emitting each as a backfill document.
func (s *Scanner) ScanChunk(ctx context.Context, t *Table, after []byte, offset int64, limit int, emit func(sqlcapture.Row) error) (done bool, err error) {
	query := t.first + strconv.Itoa(limit)
	var params [][]byte
	if after != nil {
		elems, err := sqlcapture.DecodeKey(after)
		if err != nil {
			return false, fmt.Errorf("decoding the backfill position of %s: %w", t.info.QuotedName(), err)
		}
		if len(elems) != len(t.keys) {
			return false, fmt.Errorf("the backfill position of %s has %d key values but the key has %d columns", t.info.QuotedName(), len(elems), len(t.keys))
		}
		for i, e := range elems {
			p, err := t.columns[t.keys[i]].info.KeyParam(e)
			if err != nil {
				return false, fmt.Errorf("the backfill position of %s: %w", t.info.QuotedName(), err)
			}
			params = append(params, []byte(p))
		}
		query = t.next + strconv.Itoa(limit)
	}

	if err := s.begin(ctx); err != nil {
		return false, fmt.Errorf("starting the chunk transaction: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			s.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK").Close()
		}
	}()

	rows := 0
	rr := s.conn.ExecParams(ctx, query, params, nil, nil, nil)
	for rr.NextRow() {
		rows++
		values := rr.Values()
		if len(values) != len(t.columns) {
			rr.Close()
			return false, fmt.Errorf("chunk query of %s returned %d columns, expected %d", t.info.QuotedName(), len(values), len(t.columns))
		}
		doc, key, err := t.appendRow(s.doc[:0], s.key[:0], values, offset)
		if err != nil {
			rr.Close()
			return false, err
		}
		s.doc, s.key = doc, key
		offset++
		if err := emit(sqlcapture.Row{Key: key, Doc: doc}); err != nil {
			rr.Close()
			return false, err
		}
	}
	if _, err := rr.Close(); err != nil {
		return false, fmt.Errorf("reading %s: %w", t.info.QuotedName(), err)
	}
	if err := s.conn.Exec(ctx, "COMMIT").Close(); err != nil {
		return false, fmt.Errorf("ending the chunk transaction: %w", err)
	}
	committed = true
	return rows < limit, nil
}

// begin opens the chunk's transaction under a snapshot that sees every
// transaction the replication stream has delivered.
func (s *Scanner) begin(ctx context.Context) error {
	deadline := time.Now().Add(visibilityWait)
	wait := time.Millisecond
	for {
		results, err := s.conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_current_snapshot()::text").ReadAll()
		if err != nil {
			return err
		}
		if len(results) != 2 || len(results[1].Rows) != 1 {
			return fmt.Errorf("unexpected reply to the snapshot query")
		}
		snap, err := parseSnapshot(string(results[1].Rows[0][0]))
		if err != nil {
			return err
		}
		xid, invisible := s.xids.invisibleIn(snap)
		if !invisible {
			return nil
		}
		if err := s.conn.Exec(ctx, "ROLLBACK").Close(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("transaction %d was replicated %s ago but is still not visible to new snapshots (is a synchronous standby unreachable?)", xid, visibilityWait)
		}
		if wait >= 100*time.Millisecond {
			s.log.WithField("xid", xid).Info("waiting for a replicated transaction to become visible before reading a backfill chunk")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// appendRow appends the row's document to doc and its encoded key to key.
func (t *Table) appendRow(doc, key []byte, values [][]byte, offset int64) ([]byte, []byte, error) {
	var err error
	doc = t.doc.BeginBackfill(doc, offset)
	for i := range t.columns {
		c := &t.columns[i]
		doc = append(doc, ',')
		doc = append(doc, c.name...)
		if values[i] == nil {
			doc = append(doc, "null"...)
			continue
		}
		if doc, err = c.typ.AppendJSON(doc, values[i]); err != nil {
			return nil, nil, fmt.Errorf("column %q of %s: %w", c.info.Name, t.info.QuotedName(), err)
		}
	}
	doc = document.End(doc)
	for _, k := range t.keys {
		if values[k] == nil {
			return nil, nil, fmt.Errorf("key column %q of %s is NULL", t.columns[k].info.Name, t.info.QuotedName())
		}
		if key, err = t.columns[k].info.AppendKey(key, values[k]); err != nil {
			return nil, nil, fmt.Errorf("key column %q of %s: %w", t.columns[k].info.Name, t.info.QuotedName(), err)
		}
	}
	return doc, key, nil
}
