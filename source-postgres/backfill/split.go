package backfill

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgcapture/sqlcapture"
)

// splitSample is about how many rows a split samples: enough that parts
// come out within a few percent of each other, few enough to read in
// milliseconds.
const splitSample = 20000

// estimateQuery sums the statistics' row counts of a table and its
// partitions, from the catalog alone.
const estimateQuery = `WITH RECURSIVE tree(oid) AS (
		SELECT $1::regclass::oid
		UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid)
	SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8 FROM tree JOIN pg_class c ON c.oid = tree.oid`

// Split proposes up to n-1 positions after after that divide t's remaining
// rows into parts of about equal size: for a table read in key order, keys
// of a sample of its rows (TABLESAMPLE SYSTEM, which reads whole random
// blocks); for a table read by blocks, block numbers evenly spaced over its
// size. It reads no snapshot-sensitive data: a stale guess only makes the
// parts unequal.
func (s *Scanner) Split(ctx context.Context, t *Table, after []byte, n int) ([][]byte, error) {
	if n < 2 {
		return nil, nil
	}
	if t.physical {
		size, _, _, err := s.measure(ctx, t)
		if err != nil {
			return nil, err
		}
		var start int64
		if after != nil {
			elems, err := sqlcapture.DecodeKey(after)
			if err != nil || len(elems) != 1 {
				return nil, fmt.Errorf("the backfill position of %s is not a block number", t.info.QuotedName())
			}
			start, _ = elems[0].(int64)
		}
		var bounds [][]byte
		for i := 1; i < n; i++ {
			b := start + (size-start)*int64(i)/int64(n)
			if b > start && (len(bounds) == 0 || string(sqlcapture.AppendKeyInt(nil, b)) > string(bounds[len(bounds)-1])) {
				bounds = append(bounds, sqlcapture.AppendKeyInt(nil, b))
			}
		}
		return bounds, nil
	}
	// The statistics come from the catalog alone: measuring the table's
	// size would wait for a lock on it, out of sight of the chunk query
	// that waits for the same lock anyway.
	var tuples float64
	results := s.conn.ExecParams(ctx, estimateQuery, [][]byte{[]byte(t.info.QuotedName())}, nil, nil, nil).Read()
	if results.Err != nil {
		return nil, fmt.Errorf("estimating the rows of %s: %w", t.info.QuotedName(), results.Err)
	}
	if len(results.Rows) == 1 {
		tuples, _ = strconv.ParseFloat(string(results.Rows[0][0]), 64)
	}
	percent := 1.0 // a guess for tables never analyzed
	if tuples > 0 {
		percent = min(100, 100*splitSample/tuples)
	}
	query := "SELECT " + strings.Join(t.keyColumns(), ", ") + " FROM " + t.info.QuotedName() +
		" TABLESAMPLE SYSTEM (" + strconv.FormatFloat(percent, 'f', 6, 64) + ")"
	var conds []string
	var params [][]byte
	var err error
	if t.filter != "" {
		conds = append(conds, "("+t.filter+")")
	}
	if after != nil {
		if params, err = t.keyParams(after); err != nil {
			return nil, err
		}
		p := make([]string, len(t.keys))
		for i, k := range t.keys {
			p[i] = t.columns[k].info.KeyParamExpr(i + 1)
		}
		conds = append(conds, "("+strings.Join(t.order, ", ")+") > ("+strings.Join(p, ", ")+")")
	}
	if len(conds) > 0 {
		query += " WHERE " + strings.Join(conds, " AND ")
	}
	query += " ORDER BY " + strings.Join(t.order, ", ")
	results = s.conn.ExecParams(ctx, query, params, nil, nil, nil).Read()
	if results.Err != nil {
		return nil, fmt.Errorf("sampling the keys of %s: %w", t.info.QuotedName(), results.Err)
	}
	rows := results.Rows
	if len(rows) < n {
		return nil, nil
	}
	var bounds [][]byte
	for i := 1; i < n; i++ {
		row := rows[i*len(rows)/n]
		var key []byte
		for j, k := range t.keys {
			if row[j] == nil {
				return nil, nil
			}
			if key, err = t.columns[k].info.AppendKey(key, row[j]); err != nil {
				return nil, fmt.Errorf("key column %q of %s: %w", t.columns[k].info.Name, t.info.QuotedName(), err)
			}
		}
		if len(bounds) == 0 || string(key) > string(bounds[len(bounds)-1]) {
			bounds = append(bounds, key)
		}
	}
	return bounds, nil
}

// keyColumns are the key columns quoted for a SELECT, in key order.
func (t *Table) keyColumns() []string {
	out := make([]string, len(t.keys))
	for i, k := range t.keys {
		out[i] = pgx.Identifier{t.columns[k].info.Name}.Sanitize()
	}
	return out
}
