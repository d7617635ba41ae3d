package discovery

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// explainQuery describes a relation by name: its kind, persistence, and
// for a partition the root of its tree.
const explainQuery = `
SELECT c.relkind::text, c.relpersistence::text, c.relispartition,
       coalesce((SELECT quote_ident(rn.nspname) || '.' || quote_ident(r.relname)
                 FROM pg_catalog.pg_class r JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
                 WHERE r.oid = pg_catalog.pg_partition_root(c.oid)), '')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2`

// WhyNotListed explains why ListTables, called with opts, does not list the
// table schema.name, so that a binding naming it can fail with a reason and
// a remedy: "is a partition of public.events, which publication ...". It
// returns "" for a table that ListTables lists.
func WhyNotListed(ctx context.Context, conn *pgx.Conn, schema, name string, opts Options) (string, error) {
	if schema == opts.WatermarksSchema && name == opts.WatermarksTable {
		return "is the capture's watermarks table, which cannot be captured", nil
	}
	if schema == "information_schema" || len(schema) >= 3 && schema[:3] == "pg_" {
		return fmt.Sprintf("is in the system schema %q, which is not captured", schema), nil
	}
	var kind, persistence, root string
	var partition bool
	err := conn.QueryRow(ctx, explainQuery, schema, name).Scan(&kind, &persistence, &partition, &root)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "does not exist: names are case-sensitive, and the binding must name the table exactly as the catalog does", nil
	case err != nil:
		return "", fmt.Errorf("looking up table %s: %w", pgx.Identifier{schema, name}.Sanitize(), err)
	}
	switch kind {
	case "r", "p":
	case "v":
		return "is a view; only tables can be captured", nil
	case "m":
		return "is a materialized view; only tables can be captured", nil
	case "f":
		return "is a foreign table; only tables can be captured", nil
	default:
		return fmt.Sprintf("is not a table (relkind %q)", kind), nil
	}
	switch persistence {
	case "u":
		return "is unlogged: its changes are not written to the WAL, so they cannot be replicated; ALTER TABLE ... SET LOGGED to capture it", nil
	case "t":
		return "is a temporary table", nil
	}
	leaves, err := listsLeafPartitions(ctx, conn, opts.Publication)
	if err != nil {
		return "", err
	}
	pub := pgx.Identifier{opts.Publication}.Sanitize()
	switch {
	case leaves && kind == "p":
		return fmt.Sprintf("is a partitioned table, and publication %s publishes changes under the names of its leaf partitions "+
			"(publish_via_partition_root = false): capture the partitions instead, or run ALTER PUBLICATION %s SET (publish_via_partition_root = true) "+
			"and discover again", pub, pub), nil
	case !leaves && partition:
		return fmt.Sprintf("is a partition of %s: the capture reads partitions through their root, under whose name "+
			"publication %s (publish_via_partition_root = true) replicates their changes; capture %s instead", root, pub, root), nil
	}
	return "", nil
}
