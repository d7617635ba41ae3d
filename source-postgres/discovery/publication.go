package discovery

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/pgversion"
)

// Publication is what a publication publishes, read from the catalogs
// underneath pg_publication_tables: from PostgreSQL 16 on, that view opens
// every table it lists, so that reading it waits behind anyone holding an
// ACCESS EXCLUSIVE lock on a published table (a long ALTER TABLE, a VACUUM
// FULL), and a capture would not even start.
type Publication struct {
	Name   string
	Exists bool
	// AllTables: FOR ALL TABLES.
	AllTables bool
	// ViaRoot: publish_via_partition_root, changes of partitions published
	// under their root's name.
	ViaRoot bool
	// The actions it publishes.
	Insert, Update, Delete, Truncate bool
	// GeneratedColumns is publish_generated_columns = stored (PostgreSQL
	// 18): stored generated columns are published like the others.
	GeneratedColumns bool
	// Tables holds the tables asked about that it publishes, by OID.
	Tables map[uint32]*PublishedTable
}

// PublishedTable is how a publication publishes one table.
type PublishedTable struct {
	// RowFilter is the publication's WHERE clause for the table
	// (PostgreSQL 15+), as pg_get_expr prints it, or "": rows outside it
	// are neither streamed nor, to agree, backfilled.
	RowFilter string
	// Columns are the attnums of the table's column list (PostgreSQL 15+),
	// or nil when it publishes every column.
	Columns []int16
	// ReplicaIdentity is the table's pg_class.relreplident: 'd', 'f', 'i'
	// or 'n'.
	ReplicaIdentity byte
	// FilterOutsideIdentity names the columns the row filter reads that
	// are not in the table's replica identity (which FULL makes every
	// column): PostgreSQL then refuses UPDATE and DELETE on the table,
	// since it could not tell from the old row whether it matched.
	FilterOutsideIdentity []string
	// IdentityOutsideList names the replica identity columns the column
	// list leaves out: PostgreSQL then refuses UPDATE and DELETE too. (A
	// column list with REPLICA IDENTITY FULL is refused whatever it holds.)
	IdentityOutsideList []string
}

// RefusesChanges reports whether PostgreSQL refuses UPDATE and DELETE on
// the table for what the publication asks of it: a row filter reading
// columns outside the replica identity, or a column list that leaves out
// some of it, or any column list under REPLICA IDENTITY FULL.
func (p *Publication) RefusesChanges(t *PublishedTable) bool {
	if !p.Update && !p.Delete {
		return false
	}
	return len(t.FilterOutsideIdentity) > 0 || len(t.IdentityOutsideList) > 0 ||
		t.Columns != nil && t.ReplicaIdentity == 'f'
}

// Publishes reports whether the publication publishes the table oid,
// which must have been among those ReadPublication was asked about.
func (p *Publication) Publishes(oid uint32) bool { return p.Tables[oid] != nil }

const publicationQuery = `
SELECT p.oid, p.puballtables, p.pubviaroot, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, %s
FROM pg_catalog.pg_publication p WHERE p.pubname = $1`

// publishedTablesQuery reads, for each table $2, what decides whether
// publication $1 publishes it, and under which name, as pgoutput does
// (and pg_publication_tables lists): a relation is in the publication when
// it is FOR ALL TABLES ($3), listed FOR TABLE, or (15+) in a schema listed
// FOR TABLES IN SCHEMA; a table is covered when it or a partition ancestor
// is in it. %[1]s is the schema test, which takes the relation as x.
const publishedTablesQuery = `
SELECT c.oid, c.relkind::text, c.relpersistence = 'p',
       EXISTS (SELECT FROM (SELECT c.oid AS relid UNION SELECT relid FROM pg_catalog.pg_partition_ancestors(c.oid)) a
               WHERE $3 OR EXISTS (SELECT FROM pg_catalog.pg_publication_rel pr WHERE pr.prrelid = a.relid AND pr.prpubid = $1)
                  OR %[1]s),
       EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(c.oid) a
               WHERE a.relid <> c.oid AND ($3
                  OR EXISTS (SELECT FROM pg_catalog.pg_publication_rel pr WHERE pr.prrelid = a.relid AND pr.prpubid = $1)
                  OR %[1]s)),
       EXISTS (SELECT FROM (SELECT c.oid AS relid UNION SELECT relid FROM pg_catalog.pg_partition_ancestors(c.oid)) a
               WHERE %[1]s),
       %[2]s, %[3]s, c.relreplident::text, %[4]s, %[5]s
FROM unnest($2::oid[]) AS u (oid)
JOIN pg_catalog.pg_class c ON c.oid = u.oid
LEFT JOIN pg_catalog.pg_publication_rel r ON r.prrelid = c.oid AND r.prpubid = $1`

// identityColumns is the attnums of the replica identity of table c
// (empty under FULL, which the expressions using it test themselves), and
// the expressions below name the columns that break PostgreSQL's rules for
// a row filter (r.prqual) or column list (r.prattrs) of a publication that
// publishes updates or deletes.
const identityColumns = `coalesce((SELECT (i.indkey::int2[])[0:i.indnkeyatts - 1] FROM pg_catalog.pg_index i
    WHERE i.indrelid = c.oid AND (c.relreplident = 'd' AND i.indisprimary OR c.relreplident = 'i' AND i.indisreplident)), '{}')`

// filterOutsideIdentity reads the columns of the stored expression tree
// of the row filter: a row filter reads only its own table's columns (no
// subqueries), each a Var node printed with its ":varattno", in every
// supported major.
const filterOutsideIdentity = `ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = c.oid AND c.relreplident <> 'f' AND a.attnum > 0
      AND a.attnum::text IN (SELECT (regexp_matches(r.prqual::text, ':varattno (\d+)', 'g'))[1])
      AND a.attnum <> ALL (` + identityColumns + `)
    ORDER BY a.attnum)`

const identityOutsideList = `ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = c.oid AND r.prattrs IS NOT NULL
      AND a.attnum = ANY (` + identityColumns + `) AND a.attnum <> ALL (r.prattrs::int2[])
    ORDER BY a.attnum)`

// ReadPublication reads publication name and whether and how it publishes
// each of the tables oids. A missing publication has Exists false.
func ReadPublication(ctx context.Context, conn *pgx.Conn, server pgversion.Server, name string, oids []uint32) (*Publication, error) {
	p := &Publication{Name: name, Tables: make(map[uint32]*PublishedTable)}
	genCols := "false"
	if server.Has(pgversion.PublicationGeneratedColumns) {
		genCols = "p.pubgencols = 's'"
	}
	var pubOID uint32
	err := conn.QueryRow(ctx, fmt.Sprintf(publicationQuery, genCols), name).Scan(&pubOID, &p.AllTables, &p.ViaRoot,
		&p.Insert, &p.Update, &p.Delete, &p.Truncate, &p.GeneratedColumns)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return p, nil
	case err != nil:
		return nil, fmt.Errorf("reading publication %q: %w", name, err)
	}
	p.Exists = true
	if len(oids) == 0 {
		return p, nil
	}

	inSchema := "false"
	if server.Has(pgversion.PublicationSchemas) {
		inSchema = `EXISTS (SELECT FROM pg_catalog.pg_class ac
                   JOIN pg_catalog.pg_publication_namespace pn ON pn.pnnspid = ac.relnamespace AND pn.pnpubid = $1
                   WHERE ac.oid = a.relid)`
	}
	filter, columns := "''", "NULL::int2[]"
	filterOutside, listOutside := "'{}'::text[]", "'{}'::text[]"
	if server.Has(pgversion.PublicationRowFilters) {
		filter = "coalesce(pg_catalog.pg_get_expr(r.prqual, r.prrelid), '')"
		filterOutside = filterOutsideIdentity
	}
	if server.Has(pgversion.PublicationColumnLists) {
		columns = "r.prattrs::int2[]"
		listOutside = identityOutsideList
	}
	query := fmt.Sprintf(publishedTablesQuery, inSchema, filter, columns, filterOutside, listOutside)
	rows, err := conn.Query(ctx, query, pubOID, oids, p.AllTables)
	if err != nil {
		return nil, fmt.Errorf("reading the tables of publication %q: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var oid uint32
		var kind, identity string
		var permanent, covered, underPublished, bySchema bool
		t := &PublishedTable{}
		if err := rows.Scan(&oid, &kind, &permanent, &covered, &underPublished, &bySchema, &t.RowFilter, &t.Columns,
			&identity, &t.FilterOutsideIdentity, &t.IdentityOutsideList); err != nil {
			return nil, fmt.Errorf("reading the tables of publication %q: %w", name, err)
		}
		// Via the root, a partition's changes go out under the name of its
		// topmost ancestor in the publication; otherwise under the names of
		// the leaves, and a partitioned table has no changes of its own.
		if !permanent || !covered || p.ViaRoot && underPublished || !p.ViaRoot && kind != "r" {
			continue
		}
		// A row filter or column list applies only to a table the
		// publication lists itself, and when no FOR ALL TABLES or schema
		// listing also publishes it (PostgreSQL then publishes it whole).
		if bySchema || p.AllTables {
			t.RowFilter, t.Columns, t.FilterOutsideIdentity, t.IdentityOutsideList = "", nil, nil, nil
		}
		t.ReplicaIdentity = identity[0]
		p.Tables[oid] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the tables of publication %q: %w", name, err)
	}
	return p, nil
}
