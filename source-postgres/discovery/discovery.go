// Package discovery finds the tables a capture can read: their columns,
// their keys, and the JSON Schema of their documents.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/pgtypes"
	"pgcapture/source-postgres/pgversion"
)

// Options tune ListTables.
type Options struct {
	// Server is the server's version; zero: ListTables reads it.
	Server pgversion.Server
	// Publication is the capture's publication. When it exists and
	// publishes partitions as themselves (publish_via_partition_root =
	// false), the leaf partitions of a partitioned table are listed instead
	// of its root, because that is what the replication stream names.
	Publication string
	// WatermarksSchema and WatermarksTable name the capture's own
	// watermarks table, which is not listed.
	WatermarksSchema, WatermarksTable string
}

// ListTables returns the user tables of conn's database, ordered by schema
// and name: ordinary tables and partitioned tables that are permanent
// (neither temporary nor unlogged), outside the system schemas. Views,
// materialized views and foreign tables are not listed, nor is the
// watermarks table.
func ListTables(ctx context.Context, conn *pgx.Conn, reg *pgtypes.Registry, opts Options) ([]*Table, error) {
	if opts.Server.Num == 0 {
		var err error
		if opts.Server, err = pgversion.Read(ctx, conn); err != nil {
			return nil, err
		}
	}
	leaves, err := listsLeafPartitions(ctx, conn, opts.Publication)
	if err != nil {
		return nil, err
	}
	tables, err := listTables(ctx, conn, opts, leaves)
	if err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, nil
	}
	byOID := make(map[uint32]*Table, len(tables))
	oids := make([]uint32, len(tables))
	for i, t := range tables {
		byOID[t.OID] = t
		oids[i] = t.OID
	}
	if err := addColumns(ctx, conn, reg, opts.Server, byOID, oids); err != nil {
		return nil, err
	}
	if err := applyPublication(ctx, conn, opts, byOID, oids); err != nil {
		return nil, err
	}
	if err := addKeys(ctx, conn, byOID, oids); err != nil {
		return nil, err
	}
	return tables, nil
}

// listsLeafPartitions reports whether the publication publishes each
// partition under its own name.
func listsLeafPartitions(ctx context.Context, conn *pgx.Conn, publication string) (bool, error) {
	if publication == "" {
		return false, nil
	}
	var viaRoot bool
	err := conn.QueryRow(ctx, `SELECT p.pubviaroot FROM pg_catalog.pg_publication p WHERE p.pubname = $1`, publication).Scan(&viaRoot)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading publication %q: %w", publication, err)
	}
	return !viaRoot, nil
}

// tablesQuery reads what Options.notListed decides on. It narrows to tables
// and partitioned tables only because notListed lists nothing else.
const tablesQuery = `
SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relispartition, c.relreplident::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
ORDER BY n.nspname, c.relname`

func listTables(ctx context.Context, conn *pgx.Conn, opts Options, leaves bool) ([]*Table, error) {
	rows, err := conn.Query(ctx, tablesQuery)
	if err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	var tables []*Table
	for rows.Next() {
		t := &Table{}
		var rel relation
		var identity string
		if err := rows.Scan(&t.OID, &rel.schema, &rel.name, &rel.kind, &rel.persistence, &rel.partition, &identity); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing tables: %w", err)
		}
		if opts.notListed(&rel, leaves) != "" {
			continue
		}
		t.Schema, t.Name, t.Partitioned = rel.schema, rel.name, rel.kind == "p"
		if identity != "" {
			t.ReplicaIdentity = identity[0]
		}
		tables = append(tables, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	return tables, nil
}

// relation is what decides whether ListTables lists a relation.
type relation struct {
	schema, name string
	kind         string // pg_class.relkind
	persistence  string // pg_class.relpersistence
	partition    bool   // pg_class.relispartition
	// root is the quoted name of a partition's root, for messages only.
	root string
}

// notListed returns why ListTables leaves out rel, or "" if it lists it.
// leaves is what listsLeafPartitions reports of the publication. It is the
// one statement of the listing rules: ListTables filters with it, and
// WhyNotListed explains with it.
func (o Options) notListed(rel *relation, leaves bool) string {
	if reason := o.reservedName(rel.schema, rel.name); reason != "" {
		return reason
	}
	switch rel.kind {
	case "r", "p":
	case "v":
		return "is a view; only tables can be captured"
	case "m":
		return "is a materialized view; only tables can be captured"
	case "f":
		return "is a foreign table; only tables can be captured"
	default:
		return fmt.Sprintf("is not a table (relkind %q)", rel.kind)
	}
	switch rel.persistence {
	case "u":
		return "is unlogged: its changes are not written to the WAL, so they cannot be replicated; ALTER TABLE ... SET LOGGED to capture it"
	case "t":
		return "is a temporary table"
	}
	switch {
	case leaves && rel.kind == "p":
		pub := pgx.Identifier{o.Publication}.Sanitize()
		return fmt.Sprintf("is a partitioned table, and publication %s publishes changes under the names of its leaf partitions "+
			"(publish_via_partition_root = false): capture the partitions instead, or run ALTER PUBLICATION %s SET (publish_via_partition_root = true) "+
			"and discover again", pub, pub)
	case !leaves && rel.partition:
		pub := pgx.Identifier{o.Publication}.Sanitize()
		return fmt.Sprintf("is a partition of %s: the capture reads partitions through their root, under whose name "+
			"publication %s (publish_via_partition_root = true) replicates their changes; capture %s instead", rel.root, pub, rel.root)
	}
	return ""
}

// applyPublication marks the columns the capture's publication does not
// publish and takes each table's row filter, so that backfills read what
// the replication stream carries. Without the publication (discovery
// before the capture creates it), generated columns alone are unpublished,
// as in the publication the capture creates.
func applyPublication(ctx context.Context, conn *pgx.Conn, opts Options, tables map[uint32]*Table, oids []uint32) error {
	pub := &Publication{}
	if opts.Publication != "" {
		var err error
		if pub, err = ReadPublication(ctx, conn, opts.Server, opts.Publication, oids); err != nil {
			return err
		}
	}
	for oid, t := range tables {
		pt := pub.Tables[oid]
		if pt != nil {
			t.RowFilter = pt.RowFilter
		}
		for _, c := range t.Columns {
			listed := pt != nil && pt.Columns != nil
			inList := listed && slices.Contains(pt.Columns, int16(c.Position))
			switch {
			case listed:
				c.Unpublished = !inList
			default:
				// Virtual generated columns (18) are never published.
				c.Unpublished = c.Generated && (!pub.GeneratedColumns || c.Virtual)
			}
		}
	}
	return nil
}

// reservedName returns why no relation of this name is listed, whatever it
// is, or "".
func (o Options) reservedName(schema, name string) string {
	switch {
	case schema == o.WatermarksSchema && name == o.WatermarksTable:
		return "is the capture's watermarks table, which cannot be captured"
	case schema == "information_schema" || strings.HasPrefix(schema, "pg_"):
		return fmt.Sprintf("is in the system schema %q, which is not captured", schema)
	}
	return ""
}

// columnsQuery lists the columns of the tables $1. A column's collation
// orders bytewise when it is a libc "C" or "POSIX" collation, or the
// database default when that is one; $2 says whether it is.
const columnsQuery = `
SELECT a.attrelid, a.attname, a.attnum, a.atttypid, a.atttypmod,
       format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated <> '', a.attgenerated = 'v',
       coalesce(co.collname, ''),
       CASE WHEN CASE WHEN co.oid = 100 THEN $2::boolean
                      ELSE co.collprovider = 'c' AND co.collcollate IN ('C', 'POSIX') END
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) ELSE '' END,
       coalesce(col_description(a.attrelid, a.attnum), '')
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum`

func addColumns(ctx context.Context, conn *pgx.Conn, reg *pgtypes.Registry, server pgversion.Server, tables map[uint32]*Table, oids []uint32) error {
	bytewiseDefault, err := defaultCollationIsBytewise(ctx, conn, server)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, columnsQuery, oids, bytewiseDefault)
	if err != nil {
		return fmt.Errorf("listing columns: %w", err)
	}
	for rows.Next() {
		var table, typeOID uint32
		var typmod int32
		var position int16
		c := &Column{}
		if err := rows.Scan(&table, &c.Name, &position, &typeOID, &typmod, &c.TypeName,
			&c.NotNull, &c.Generated, &c.Virtual, &c.Collation, &c.bytewiseCollation, &c.Comment); err != nil {
			rows.Close()
			return fmt.Errorf("listing columns: %w", err)
		}
		c.Position = int(position)
		c.Type = reg.Lookup(typeOID, typmod)
		t := tables[table]
		t.Columns = append(t.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing columns: %w", err)
	}
	return nil
}

// defaultCollationIsBytewise reports whether the database's default
// collation orders text by bytes: a libc "C" or "POSIX" locale. An ICU
// default (PostgreSQL 15's datlocprovider 'i') never does, whatever
// datcollate says.
func defaultCollationIsBytewise(ctx context.Context, conn *pgx.Conn, server pgversion.Server) (bool, error) {
	provider := "'c'"
	if server.Has(pgversion.DatabaseLocaleProvider) {
		provider = "d.datlocprovider"
	}
	var bytewise bool
	err := conn.QueryRow(ctx, `SELECT d.datcollate IN ('C', 'POSIX') AND `+provider+` = 'c'
		FROM pg_catalog.pg_database d WHERE d.datname = current_database()`).Scan(&bytewise)
	if err != nil {
		return false, fmt.Errorf("reading the database's collation: %w", err)
	}
	return bytewise, nil
}

// indexesQuery lists the unique indexes of the tables $1 that could serve
// as a key: valid, without a predicate or expressions. indnkeyatts leaves
// out INCLUDE columns.
const indexesQuery = `
SELECT i.indrelid, ic.relname, i.indisprimary,
       (i.indkey::int2[])[0:i.indnkeyatts - 1]
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY($1::oid[])
  AND i.indisunique AND i.indisvalid AND i.indislive
  AND i.indpred IS NULL AND i.indexprs IS NULL
ORDER BY i.indrelid, i.indisprimary DESC, ic.relname`

// addKeys chooses each table's key: its primary key; else, of the unique
// indexes whose columns are all NOT NULL, the one whose name sorts first,
// so that the choice is stable; else none. An index over a column that
// documents do not carry (a generated column, which the replication
// stream lacks, or one named _meta) is passed over: the key must be in
// every document.
func addKeys(ctx context.Context, conn *pgx.Conn, tables map[uint32]*Table, oids []uint32) error {
	rows, err := conn.Query(ctx, indexesQuery, oids)
	if err != nil {
		return fmt.Errorf("listing indexes: %w", err)
	}
	for rows.Next() {
		var table uint32
		var name string
		var primary bool
		var attnums []int16
		if err := rows.Scan(&table, &name, &primary, &attnums); err != nil {
			rows.Close()
			return fmt.Errorf("listing indexes: %w", err)
		}
		t := tables[table]
		if len(t.Key) > 0 {
			continue // a better index came first
		}
		if key, ok := t.indexKey(attnums, !primary); ok {
			t.Key, t.IsFallbackKey = key, !primary
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing indexes: %w", err)
	}
	for _, t := range tables {
		t.Keyless = len(t.Key) == 0
		for _, name := range t.Key {
			c := t.column(name)
			c.jsonType = c.Type.AsKey()
		}
	}
	return nil
}

// indexKey returns the column names of an index, if they can be a key.
func (t *Table) indexKey(attnums []int16, needNotNull bool) ([]string, bool) {
	if len(attnums) == 0 {
		return nil, false
	}
	key := make([]string, 0, len(attnums))
	for _, attnum := range attnums {
		i := slices.IndexFunc(t.Columns, func(c *Column) bool { return c.Position == int(attnum) })
		if i < 0 {
			return nil, false
		}
		c := t.Columns[i]
		if !c.InDocuments() || needNotNull && !c.NotNull {
			return nil, false
		}
		key = append(key, c.Name)
	}
	return key, true
}
