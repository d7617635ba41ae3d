package postgres

import (
	"context"

	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
)

// estimateRows returns the planner's estimate of a table's rows (summed over
// its partitions), which backfill progress is measured against: 0 when the
// table was never vacuumed or analyzed, and then has no estimate.
func (db *Database) estimateRows(ctx context.Context, t *discovery.Table) int64 {
	var n int64
	// The catalog is read directly: pg_partition_tree would lock the table,
	// and wait behind any DDL holding it.
	err := db.conn.QueryRow(ctx, `WITH RECURSIVE tree(oid) AS (
			SELECT $1::regclass::oid
			UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid)
		SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::bigint FROM tree JOIN pg_class c ON c.oid = tree.oid`, t.QuotedName()).Scan(&n)
	if err != nil {
		// Progress goes without an estimate; the capture does not need one.
		db.log.WithFields(logrus.Fields{"table": t.QuotedName(), "error": err}).Debug("estimating the table's rows")
		return 0
	}
	return n
}
