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
	if reason := opts.reservedName(schema, name); reason != "" {
		return reason, nil
	}
	rel := relation{schema: schema, name: name}
	err := conn.QueryRow(ctx, explainQuery, schema, name).Scan(&rel.kind, &rel.persistence, &rel.partition, &rel.root)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "does not exist: names are case-sensitive, and the binding must name the table exactly as the catalog does", nil
	case err != nil:
		return "", fmt.Errorf("looking up table %s: %w", pgx.Identifier{schema, name}.Sanitize(), err)
	}
	leaves, err := listsLeafPartitions(ctx, conn, opts.Publication)
	if err != nil {
		return "", err
	}
	return opts.notListed(&rel, leaves), nil
}
