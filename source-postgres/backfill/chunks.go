// Package backfill reads tables in key-ordered chunks: the queries, their
// snapshots, and the conversion of each row to a document.
package backfill

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
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
	// first reads the first chunk in key order; next the chunk after a key.
	first, next string
	// head, filter and order build ranged variants: the SELECT, the row
	// filter (empty: none) and the key order expressions.
	head, filter string
	order        []string
	// physical tables are read by ranges of blocks: ranged reads the rows
	// of a block range.
	physical bool
	ranged   string
}

// Physical reports whether the table is read by ranges of blocks.
func (t *Table) Physical() bool { return t.physical }

type column struct {
	name  []byte // JSON-encoded name and colon
	typ   *pgtypes.Type
	info  *discovery.Column
	isKey bool
}

// NewTable prepares the chunk queries of a table. A physical table is read
// in ranges of its blocks (ctid order); others in key order. tag, if any,
// is every document's _meta.source.tag.
func NewTable(t *discovery.Table, physical bool, tag string) (*Table, error) {
	if !physical && len(t.Key) == 0 {
		return nil, fmt.Errorf("table %s has no primary key or usable unique index to backfill it in key order", t.QuotedName())
	}
	bt := &Table{info: t, doc: document.NewTable(t.Schema, t.Name, tag), physical: physical}
	var selects []string
	for _, c := range t.Columns {
		if !c.InDocuments() {
			// Documents leave out the columns the publication does not
			// publish, and a column named _meta: both paths emit the same
			// fields.
			continue
		}
		bt.columns = append(bt.columns, column{name: document.FieldName(c.Name), typ: c.JSONType(), info: c})
		selects = append(selects, pgx.Identifier{c.Name}.Sanitize())
	}
	head := "SELECT " + strings.Join(selects, ", ") + " FROM " + t.QuotedName()
	// The publication's row filter: the backfill reads the rows that the
	// replication stream carries, no others.
	where := " WHERE "
	if t.RowFilter != "" {
		where = " WHERE (" + t.RowFilter + ") AND "
	}
	if physical {
		// The largest leaf bounds the scan: a partitioned table's block
		// ranges apply to each of its partitions. (pg_partition_tree lists
		// nothing for a table that is not partitioned.)
		bt.ranged = head + where + "ctid >= $1::tid AND ctid < $2::tid"
		return bt, nil
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
	bt.head, bt.filter, bt.order = head, t.RowFilter, order
	tail := " ORDER BY " + strings.Join(order, ", ") + " LIMIT "
	bt.first = head + tail
	if t.RowFilter != "" {
		bt.first = head + " WHERE (" + t.RowFilter + ")" + tail
	}
	bt.next = head + where + "(" + strings.Join(order, ", ") + ") > (" + strings.Join(params, ", ") + ")" + tail
	return bt, nil
}

// measureQuery measures a table: the largest leaf's blocks bound a block
// scan, since a partitioned table's block ranges apply to each of its
// partitions (pg_partition_tree lists nothing for a table that is not
// partitioned); the statistics' rows and pages estimate rows per block.
const measureQuery = `SELECT coalesce(max(pg_relation_size(p.relid)), 0) / current_setting('block_size')::bigint,
	coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0)::float8, coalesce(sum(c.relpages), 0)::float8
	FROM (SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf UNION SELECT $1::regclass) p
	JOIN pg_class c ON c.oid = p.relid`

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

// ScanChunk reads t's next chunk after the position after and emits each
// row as a backfill document. It returns the position the next chunk
// starts after, and whether the table has no more rows.
// until, if not nil, bounds the chunk: only rows at or before it are read,
// and done reports that none remain up to it.
func (s *Scanner) ScanChunk(ctx context.Context, t *Table, after, until []byte, offset int64, limit int, emit func(sqlcapture.Row) error) (next []byte, done bool, err error) {
	if err := s.begin(ctx, t); err != nil {
		return nil, false, fmt.Errorf("starting the chunk transaction: %w", err)
	}
	defer func() {
		if err != nil {
			s.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK").Close() //nolint:errcheck // the chunk's error is returned; a connection that cannot roll back fails the next BEGIN
		}
	}()
	if t.physical {
		next, done, err = s.scanBlocks(ctx, t, after, until, offset, limit, emit)
	} else {
		next, done, err = s.scanKeys(ctx, t, after, until, offset, limit, emit)
	}
	if err != nil {
		return nil, false, err
	}
	if err := s.conn.Exec(ctx, "COMMIT").Close(); err != nil {
		return nil, false, fmt.Errorf("ending the chunk transaction: %w", err)
	}
	return next, done, nil
}

// scanKeys reads up to limit rows with keys greater than after (and at or
// below until), in key order.
func (s *Scanner) scanKeys(ctx context.Context, t *Table, after, until []byte, offset int64, limit int, emit func(sqlcapture.Row) error) ([]byte, bool, error) {
	query := t.first + strconv.Itoa(limit)
	var params [][]byte
	if after != nil {
		p, err := t.keyParams(after)
		if err != nil {
			return nil, false, err
		}
		params = p
		query = t.next + strconv.Itoa(limit)
	}
	if until != nil {
		p, err := t.keyParams(until)
		if err != nil {
			return nil, false, err
		}
		query = t.rangeQuery(after != nil, len(params)) + strconv.Itoa(limit)
		params = append(params, p...)
	}
	rows, err := s.readRows(ctx, t, query, params, offset, emit)
	if err != nil || rows == 0 {
		return after, true, err
	}
	// A copy: s.key is reused by the scanner's next chunk, which may come
	// before the engine records this position (a round's failed chunks are
	// read again on a connection whose chunk already succeeded).
	return bytes.Clone(s.key), rows < limit, nil
}

// keyParams decodes a position into the key's query parameters.
func (t *Table) keyParams(pos []byte) ([][]byte, error) {
	elems, err := sqlcapture.DecodeKey(pos)
	if err != nil {
		return nil, fmt.Errorf("decoding the backfill position of %s: %w", t.info.QuotedName(), err)
	}
	if len(elems) != len(t.keys) {
		return nil, fmt.Errorf("the backfill position of %s has %d key values but the key has %d columns", t.info.QuotedName(), len(elems), len(t.keys))
	}
	var params [][]byte
	for i, e := range elems {
		p, err := t.columns[t.keys[i]].info.KeyParam(e)
		if err != nil {
			return nil, fmt.Errorf("the backfill position of %s: %w", t.info.QuotedName(), err)
		}
		params = append(params, []byte(p))
	}
	return params, nil
}

// rangeQuery is the chunk query of a bounded range, after a key if
// fromKey (its parameters first), up to the key in the parameters after.
func (t *Table) rangeQuery(fromKey bool, first int) string {
	tuple := func(from int) string {
		params := make([]string, len(t.keys))
		for i, k := range t.keys {
			params[i] = t.columns[k].info.KeyParamExpr(from + i + 1)
		}
		return "(" + strings.Join(params, ", ") + ")"
	}
	order := "(" + strings.Join(t.order, ", ") + ")"
	var conds []string
	if t.filter != "" {
		conds = append(conds, "("+t.filter+")")
	}
	if fromKey {
		conds = append(conds, order+" > "+tuple(0))
	}
	conds = append(conds, order+" <= "+tuple(first))
	return t.head + " WHERE " + strings.Join(conds, " AND ") + " ORDER BY " + strings.Join(t.order, ", ") + " LIMIT "
}

// scanBlocks reads the rows of a range of blocks starting at the block that
// after names, sized from the table's statistics to hold about limit rows.
// A row that an update moves while the scan runs may be read twice or not at
// all; its change is emitted either way, since a table without a key has
// all its changes emitted.
func (s *Scanner) scanBlocks(ctx context.Context, t *Table, after, until []byte, offset int64, limit int, emit func(sqlcapture.Row) error) ([]byte, bool, error) {
	var start int64
	if after != nil {
		elems, err := sqlcapture.DecodeKey(after)
		if err != nil || len(elems) != 1 {
			return nil, false, fmt.Errorf("the backfill position of %s is not a block number", t.info.QuotedName())
		}
		start, _ = elems[0].(int64)
	}
	size, tuples, pages, err := s.measure(ctx, t)
	if err != nil {
		return nil, false, err
	}
	perBlock := 50.0 // a guess for tables never analyzed
	if tuples > 0 && pages > 0 {
		perBlock = max(tuples/pages, 1)
	}
	end := start + max(int64(float64(limit)/perBlock), 1)
	if until != nil {
		// A range of blocks ends before its bound's block.
		elems, err := sqlcapture.DecodeKey(until)
		if err != nil || len(elems) != 1 {
			return nil, false, fmt.Errorf("the backfill range bound of %s is not a block number", t.info.QuotedName())
		}
		bound, _ := elems[0].(int64)
		if end >= bound {
			end = bound
			size = min(size, bound)
		}
	}
	params := [][]byte{fmt.Appendf(nil, "(%d,0)", start), fmt.Appendf(nil, "(%d,0)", end)}
	if _, err := s.readRows(ctx, t, t.ranged, params, offset, emit); err != nil {
		return nil, false, err
	}
	return sqlcapture.AppendKeyInt(nil, end), end >= size, nil
}

// measure returns a table's size in blocks (its largest leaf's, for a
// partitioned table) and the statistics' rows and pages.
func (s *Scanner) measure(ctx context.Context, t *Table) (size int64, tuples, pages float64, err error) {
	results := s.conn.ExecParams(ctx, measureQuery, [][]byte{[]byte(t.info.QuotedName())}, nil, nil, nil).Read()
	err = results.Err
	if err == nil && len(results.Rows) != 1 {
		err = fmt.Errorf("no size")
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("measuring %s: %w", t.info.QuotedName(), err)
	}
	size, _ = strconv.ParseInt(string(results.Rows[0][0]), 10, 64)
	tuples, _ = strconv.ParseFloat(string(results.Rows[0][1]), 64)
	pages, _ = strconv.ParseFloat(string(results.Rows[0][2]), 64)
	return size, tuples, pages, nil
}

// readRows runs a chunk query and emits its rows; s.key holds the last
// row's key afterwards.
func (s *Scanner) readRows(ctx context.Context, t *Table, query string, params [][]byte, offset int64, emit func(sqlcapture.Row) error) (int, error) {
	rows := 0
	rr := s.conn.ExecParams(ctx, query, params, nil, nil, nil)
	for rr.NextRow() {
		values := rr.Values()
		if len(values) != len(t.columns) {
			rr.Close() //nolint:errcheck // the error returned is the cause
			return 0, fmt.Errorf("chunk query of %s returned %d columns, expected %d", t.info.QuotedName(), len(values), len(t.columns))
		}
		doc, key, err := t.appendRow(s.doc[:0], s.key[:0], values, offset+int64(rows))
		if err != nil {
			rr.Close() //nolint:errcheck // the error returned is the cause
			return 0, err
		}
		s.doc, s.key = doc, key
		rows++
		if err := emit(sqlcapture.Row{Key: key, Doc: doc}); err != nil {
			rr.Close() //nolint:errcheck // the error returned is the cause
			return 0, err
		}
	}
	if _, err := rr.Close(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", t.info.QuotedName(), err)
	}
	return rows, nil
}

// begin opens the chunk's transaction under a snapshot that sees every
// transaction the replication stream has delivered.
//
// The table is locked (ACCESS SHARE, as the chunk's SELECT would) before the
// snapshot is taken: a table rewrite (ALTER TABLE … TYPE, VACUUM FULL,
// CLUSTER) is not MVCC-safe, and a snapshot older than the rewrite's commit
// sees the rewritten table as empty, so a chunk that took its snapshot while
// a rewrite held the table would read no rows and end the backfill early.
// LOCK TABLE takes no snapshot, so the snapshot comes after the rewrite.
func (s *Scanner) begin(ctx context.Context, t *Table) error {
	deadline := time.Now().Add(visibilityWait)
	wait := time.Millisecond
	start := "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; LOCK TABLE " + t.info.QuotedName() + " IN ACCESS SHARE MODE; SELECT pg_current_snapshot()::text"
	for {
		results, err := s.conn.Exec(ctx, start).ReadAll()
		if err != nil {
			return err
		}
		if len(results) != 3 || len(results[2].Rows) != 1 {
			return fmt.Errorf("unexpected reply to the snapshot query")
		}
		snap, err := parseSnapshot(string(results[2].Rows[0][0]))
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
