package postgres

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
)

// serverFacts describe the server and the user, whatever the tables.
type serverFacts struct {
	walLevel string
	// replication is whether the user may replicate: the REPLICATION
	// attribute, a superuser, or a member of RDS's rds_replication role.
	replication bool
	// The replication slot of the configured name; all "" when missing.
	slotType, slotDatabase, slotPlugin string
	// What a capture on a standby, and a failover slot, depend on.
	standby  standbyFacts
	failover failoverFacts
}

const serverQuery = `
SELECT current_setting('wal_level'),
       r.rolsuper OR r.rolreplication OR EXISTS (
           SELECT 1 FROM pg_catalog.pg_roles rds
           WHERE rds.rolname = 'rds_replication' AND pg_has_role(r.oid, rds.oid, 'MEMBER')),
       coalesce(s.slot_type, ''), coalesce(s.database::text, ''), coalesce(s.plugin::text, '')
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1
WHERE r.rolname = current_user`

func (db *Database) inspectServer(ctx context.Context) (serverFacts, error) {
	var f serverFacts
	err := db.conn.QueryRow(ctx, serverQuery, db.cfg.Advanced.SlotName).Scan(
		&f.walLevel, &f.replication, &f.slotType, &f.slotDatabase, &f.slotPlugin)
	if err != nil {
		return f, fmt.Errorf("checking the server's settings and the privileges of user %q: %w", db.cfg.User, err)
	}
	if f.standby, err = db.inspectStandby(ctx); err != nil {
		return f, err
	}
	if f.failover, err = db.inspectFailover(ctx); err != nil {
		return f, err
	}
	db.log.WithFields(logrus.Fields{
		"serverVersion": db.server.Version, "walLevel": f.walLevel, "user": db.cfg.User, "mayReplicate": f.replication,
		"slot": db.cfg.Advanced.SlotName, "slotDatabase": f.slotDatabase, "slotPlugin": f.slotPlugin,
	}).Debug("checked the server")
	return f, nil
}

// relationFacts describe a table as the user sees it.
type relationFacts struct {
	exists     bool
	usage      bool // USAGE on its schema, without which it cannot be named
	selectable bool // SELECT
	writable   bool // INSERT and UPDATE
	owned      bool // the owner's privileges, which publishing it needs
	published  bool // in the capture's publication
	// publishedAs is how the publication publishes it, when it does.
	publishedAs *discovery.PublishedTable
}

// captureFacts describe what the capture of some tables needs.
type captureFacts struct {
	createInDatabase bool // CREATE on the database, to create a publication
	publication      struct {
		exists, allTables, allActions, owned bool
	}
	watermarksSchema struct {
		exists, create bool // CREATE and USAGE on it
	}
	watermarks relationFacts
	tables     []relationFacts // in the order of the tables inspected
	// published is what the publication publishes of the tables.
	published *discovery.Publication
}

const publicationQuery = `
SELECT has_database_privilege(current_database(), 'CREATE'),
       p.oid IS NOT NULL, coalesce(p.puballtables, false),
       coalesce(p.pubinsert AND p.pubupdate AND p.pubdelete, false),
       coalesce(pg_has_role(p.pubowner, 'USAGE'), false),
       n.oid IS NOT NULL,
       coalesce(has_schema_privilege(n.oid, 'CREATE') AND has_schema_privilege(n.oid, 'USAGE'), false)
FROM (VALUES (1)) AS one (x)
LEFT JOIN pg_catalog.pg_publication p ON p.pubname = $1
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $2`

// relationsQuery describes the tables named by $1 (schemas) and $2 (names)
// by their position in those arrays, counting from 1. Missing tables have
// no row. The privilege functions take OIDs, so that a schema the user may
// not use is reported rather than failing the query.
const relationsQuery = `
SELECT w.i::int, c.oid,
       has_schema_privilege(n.oid, 'USAGE'),
       has_table_privilege(c.oid, 'SELECT'),
       has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'UPDATE'),
       pg_has_role(c.relowner, 'USAGE')
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w (schema, name, i)
JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name`

func (db *Database) inspectCapture(ctx context.Context, tables []*discovery.Table) (*captureFacts, error) {
	f := &captureFacts{tables: make([]relationFacts, len(tables))}
	pub := db.cfg.Advanced.PublicationName
	wm := db.watermarks()
	err := db.conn.QueryRow(ctx, publicationQuery, pub, wm.Schema).Scan(&f.createInDatabase,
		&f.publication.exists, &f.publication.allTables, &f.publication.allActions, &f.publication.owned,
		&f.watermarksSchema.exists, &f.watermarksSchema.create)
	if err != nil {
		return nil, fmt.Errorf("looking up publication %q: %w", pub, err)
	}

	// The watermarks table goes first, at position 1.
	schemas, names := []string{wm.Schema}, []string{wm.Table}
	for _, t := range tables {
		schemas, names = append(schemas, t.Schema), append(names, t.Name)
	}
	rows, err := db.conn.Query(ctx, relationsQuery, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("checking the privileges of user %q on the captured tables: %w", db.cfg.User, err)
	}
	oids := make([]uint32, len(names))
	for rows.Next() {
		var i int
		var oid uint32
		r := relationFacts{exists: true}
		if err := rows.Scan(&i, &oid, &r.usage, &r.selectable, &r.writable, &r.owned); err != nil {
			rows.Close()
			return nil, fmt.Errorf("checking the privileges of user %q on the captured tables: %w", db.cfg.User, err)
		}
		oids[i-1] = oid
		if i == 1 {
			f.watermarks = r
		} else {
			f.tables[i-2] = r
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("checking the privileges of user %q on the captured tables: %w", db.cfg.User, err)
	}
	published, err := discovery.ReadPublication(ctx, db.conn, db.server, pub, oids)
	if err != nil {
		return nil, err
	}
	f.published = published
	f.watermarks.published = published.Publishes(oids[0])
	for i := range f.tables {
		f.tables[i].published = published.Publishes(oids[i+1])
		f.tables[i].publishedAs = published.Tables[oids[i+1]]
	}
	return f, nil
}
