package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
)

// minServerVersion is the oldest supported server, as server_version_num:
// backfills take their snapshots with pg_current_snapshot(), new in 13.
const minServerVersion = 130000

// maxChanges bounds how many statements ensurePrerequisites runs. It needs
// at most three (the watermarks table, the publication, a table added to
// it); the bound only keeps a server that does not report what it did from
// making the loop run forever.
const maxChanges = 5

// A problem keeps the capture from running until the user fixes it.
type problem struct {
	what string // what is wrong
	fix  string // what the user has to do about it
}

// prerequisites are what inspecting the database found: the problems the
// connector cannot fix, and the statements that a capture session runs
// itself to fix the others, in order.
type prerequisites struct {
	problems []problem
	changes  []string
}

// err lists every problem in one error, or returns nil if there is none.
func (p *prerequisites) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("the capture cannot run:")
	for _, pr := range p.problems {
		fmt.Fprintf(&b, "\n - %s; %s", pr.what, pr.fix)
	}
	if len(p.changes) > 0 {
		fmt.Fprintf(&b, "\n - once the above is fixed, the capture runs these statements itself when it starts: %s", strings.Join(p.changes, "; "))
	}
	return errors.New(b.String())
}

// checkServer reports what keeps any capture from running on this server as
// this user, whichever its tables.
func (db *database) checkServer(ctx context.Context) error {
	f, err := db.inspectServer(ctx)
	if err != nil {
		return err
	}
	p := &prerequisites{problems: db.serverProblems(f)}
	return p.err()
}

// checkPrerequisites reports in one error every reason the capture of
// tables cannot run. It changes nothing: what a capture session would fix
// by itself is logged, not reported as a problem.
func (db *database) checkPrerequisites(ctx context.Context, tables []*discovery.Table) error {
	p, err := db.inspect(ctx, tables)
	if err != nil {
		return err
	}
	if err := p.err(); err != nil {
		return err
	}
	for _, sql := range p.changes {
		db.log.WithField("sql", sql).Info("when the capture starts, it will run this statement to prepare the database")
	}
	return nil
}

// ensurePrerequisites readies the database for capturing tables: it creates
// the watermarks table and the publication and adds tables to it where the
// user may, and otherwise reports in one error every problem with its fix.
// It changes nothing while any problem remains.
func (db *database) ensurePrerequisites(ctx context.Context, tables []*discovery.Table) error {
	// Each change can settle the next (a new watermarks table is already
	// published by a FOR ALL TABLES publication), so the database is
	// inspected again after each.
	for i := 0; ; i++ {
		p, err := db.inspect(ctx, tables)
		if err != nil {
			return err
		}
		if err := p.err(); err != nil {
			return err
		}
		if len(p.changes) == 0 {
			return nil
		}
		if i == maxChanges {
			return fmt.Errorf("the capture cannot run: after %d changes, the database still needs %s; run that as the owner of the tables or a superuser",
				maxChanges, strings.Join(p.changes, "; "))
		}
		sql := p.changes[0]
		if _, err := db.conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("the capture cannot run: preparing the database failed: %s: %w; run it as the owner of the tables or a superuser", sql, err)
		}
		db.log.WithField("sql", sql).Info("prepared the database for the capture")
	}
}

// inspect finds what the capture of tables needs from the database.
func (db *database) inspect(ctx context.Context, tables []*discovery.Table) (*prerequisites, error) {
	server, err := db.inspectServer(ctx)
	if err != nil {
		return nil, err
	}
	p := &prerequisites{problems: db.serverProblems(server)}
	// The catalog queries below need a supported server.
	if server.versionNum < minServerVersion {
		return p, nil
	}
	capture, err := db.inspectCapture(ctx, tables)
	if err != nil {
		return nil, err
	}
	db.captureProblems(p, capture, tables)
	return p, nil
}

// serverFacts describe the server and the user, whatever the tables.
type serverFacts struct {
	versionNum int
	version    string
	walLevel   string
	// replication is whether the user may replicate: the REPLICATION
	// attribute, a superuser, or a member of RDS's rds_replication role.
	replication bool
	// The replication slot of the configured name; all "" when missing.
	slotType, slotDatabase, slotPlugin string
}

const serverQuery = `
SELECT current_setting('server_version_num')::int, current_setting('server_version'), current_setting('wal_level'),
       r.rolsuper OR r.rolreplication OR EXISTS (
           SELECT 1 FROM pg_catalog.pg_roles rds
           WHERE rds.rolname = 'rds_replication' AND pg_has_role(r.oid, rds.oid, 'MEMBER')),
       coalesce(s.slot_type, ''), coalesce(s.database::text, ''), coalesce(s.plugin::text, '')
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1
WHERE r.rolname = current_user`

func (db *database) inspectServer(ctx context.Context) (serverFacts, error) {
	var f serverFacts
	err := db.conn.QueryRow(ctx, serverQuery, db.cfg.Advanced.SlotName).Scan(
		&f.versionNum, &f.version, &f.walLevel, &f.replication, &f.slotType, &f.slotDatabase, &f.slotPlugin)
	if err != nil {
		return f, fmt.Errorf("checking the server's settings and the privileges of user %q: %w", db.cfg.User, err)
	}
	db.log.WithFields(logrus.Fields{
		"serverVersion": f.version, "walLevel": f.walLevel, "user": db.cfg.User, "mayReplicate": f.replication,
		"slot": db.cfg.Advanced.SlotName, "slotDatabase": f.slotDatabase, "slotPlugin": f.slotPlugin,
	}).Debug("checked the server")
	return f, nil
}

func (db *database) serverProblems(f serverFacts) []problem {
	var out []problem
	user := discovery.QuoteIdent(db.cfg.User)
	slot := db.cfg.Advanced.SlotName
	if f.versionNum < minServerVersion {
		out = append(out, problem{
			fmt.Sprintf("PostgreSQL %s is not supported", f.version),
			"upgrade to PostgreSQL 13 or later (backfills use pg_current_snapshot(), new in 13)",
		})
	}
	if f.walLevel != "logical" {
		out = append(out, problem{
			fmt.Sprintf("logical replication is not enabled: wal_level is %q", f.walLevel),
			"run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL (Amazon RDS and Aurora: set rds.logical_replication = 1 in the parameter group and reboot; Google Cloud SQL: set the flag cloudsql.logical_decoding to on; Azure: set the server parameter wal_level to logical)",
		})
	}
	if !f.replication {
		out = append(out, problem{
			fmt.Sprintf("user %q lacks the REPLICATION attribute", db.cfg.User),
			fmt.Sprintf("run ALTER USER %s WITH REPLICATION (Amazon RDS and Aurora: GRANT rds_replication TO %s)", user, user),
		})
	}
	switch {
	case f.slotType == "":
	case f.slotType != "logical":
		out = append(out, problem{
			fmt.Sprintf("replication slot %q is a %s slot", slot, f.slotType),
			`set "advanced.slotName" to a name no other slot of the server has`,
		})
	case f.slotDatabase != db.cfg.Database:
		out = append(out, problem{
			fmt.Sprintf("replication slot %q belongs to database %q, not %q", slot, f.slotDatabase, db.cfg.Database),
			`set "advanced.slotName" to a name of this capture's own (slot names are shared by all databases of a server)`,
		})
	case f.slotPlugin != "pgoutput":
		out = append(out, problem{
			fmt.Sprintf("replication slot %q uses the %q plugin, not pgoutput", slot, f.slotPlugin),
			fmt.Sprintf(`if nothing else uses it, drop it with SELECT pg_drop_replication_slot('%s'); or set "advanced.slotName" to another name`, slot),
		})
	}
	return out
}

// relationFacts describe a table as the user sees it.
type relationFacts struct {
	exists     bool
	usage      bool // USAGE on its schema, without which it cannot be named
	selectable bool // SELECT
	writable   bool // INSERT and UPDATE
	owned      bool // the owner's privileges, which publishing it needs
	published  bool // in the capture's publication
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
WITH published AS MATERIALIZED (
    SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = $3)
SELECT w.i::int,
       has_schema_privilege(n.oid, 'USAGE'),
       has_table_privilege(c.oid, 'SELECT'),
       has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'UPDATE'),
       pg_has_role(c.relowner, 'USAGE'),
       EXISTS (SELECT 1 FROM published p WHERE p.schemaname = n.nspname AND p.tablename = c.relname)
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w (schema, name, i)
JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name`

func (db *database) inspectCapture(ctx context.Context, tables []*discovery.Table) (*captureFacts, error) {
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
	rows, err := db.conn.Query(ctx, relationsQuery, schemas, names, pub)
	if err != nil {
		return nil, fmt.Errorf("checking the privileges of user %q on the captured tables: %w", db.cfg.User, err)
	}
	defer rows.Close()
	for rows.Next() {
		var i int
		r := relationFacts{exists: true}
		if err := rows.Scan(&i, &r.usage, &r.selectable, &r.writable, &r.owned, &r.published); err != nil {
			return nil, fmt.Errorf("checking the privileges of user %q on the captured tables: %w", db.cfg.User, err)
		}
		if i == 1 {
			f.watermarks = r
		} else {
			f.tables[i-2] = r
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("checking the privileges of user %q on the captured tables: %w", db.cfg.User, err)
	}
	return f, nil
}

// captureProblems adds to p what the capture of tables lacks, and the
// changes that fix what the user may fix.
func (db *database) captureProblems(p *prerequisites, f *captureFacts, tables []*discovery.Table) {
	user := discovery.QuoteIdent(db.cfg.User)
	pubName := db.cfg.Advanced.PublicationName
	pub := discovery.QuoteIdent(pubName)
	wm := db.quotedWatermarks()
	wmSchema := discovery.QuoteIdent(db.watermarks().Schema)

	var noUsage, unreadable, notOwned, unpublished []string
	for i, t := range tables {
		r := f.tables[i]
		if !r.exists {
			// Dropped since it was discovered: the capture fails on it later
			// with the table's name, as it would on a drop at any time.
			continue
		}
		if !r.usage {
			noUsage = appendNew(noUsage, discovery.QuoteIdent(t.Schema))
		}
		if !r.selectable {
			unreadable = append(unreadable, t.QuotedName())
		}
		if !r.owned {
			notOwned = append(notOwned, t.QuotedName())
		}
		if !r.published {
			unpublished = append(unpublished, t.QuotedName())
		}
	}
	if len(noUsage) > 0 || len(unreadable) > 0 {
		var grants []string
		if len(noUsage) > 0 {
			grants = append(grants, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", strings.Join(noUsage, ", "), user))
		}
		if len(unreadable) > 0 {
			grants = append(grants, fmt.Sprintf("GRANT SELECT ON TABLE %s TO %s", strings.Join(unreadable, ", "), user))
		}
		what := fmt.Sprintf("user %q cannot read table(s) %s", db.cfg.User, strings.Join(unreadable, ", "))
		if len(unreadable) == 0 {
			what = fmt.Sprintf("user %q may not use schema(s) %s of the captured tables", db.cfg.User, strings.Join(noUsage, ", "))
		}
		p.problems = append(p.problems, problem{what, "run " + strings.Join(grants, "; ")})
	}

	// The watermarks table. A table the user creates is the user's own,
	// which it may then publish.
	createWatermarks := "CREATE TABLE IF NOT EXISTS " + wm + " (slot TEXT PRIMARY KEY, watermark TEXT)"
	grantWatermarks := fmt.Sprintf("GRANT SELECT, INSERT, UPDATE ON TABLE %s TO %s", wm, user)
	wmOwned := f.watermarks.owned
	// adminSetup is what whoever fixes the publication must run first
	// because the watermarks table is missing and the user cannot create it.
	var adminSetup []string
	switch w := f.watermarks; {
	case !w.exists && !f.watermarksSchema.exists:
		p.problems = append(p.problems, problem{
			fmt.Sprintf("the schema %s of the watermarks table does not exist", wmSchema),
			fmt.Sprintf(`run CREATE SCHEMA %s; or set "advanced.watermarksTable" to a table in an existing schema`, wmSchema),
		})
	case !w.exists && f.watermarksSchema.create:
		p.changes = append(p.changes, createWatermarks)
		wmOwned = true
	case !w.exists:
		adminSetup = []string{createWatermarks, grantWatermarks}
		p.problems = append(p.problems, problem{
			fmt.Sprintf("the watermarks table %s does not exist, and user %q may not create it in schema %s", wm, db.cfg.User, wmSchema),
			fmt.Sprintf("run %s; %s", createWatermarks, grantWatermarks),
		})
	case !w.usage || !w.selectable || !w.writable:
		grant := grantWatermarks
		if !w.usage {
			grant = fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s; %s", wmSchema, user, grant)
		}
		p.problems = append(p.problems, problem{
			fmt.Sprintf("user %q cannot write to the watermarks table %s", db.cfg.User, wm),
			"run " + grant,
		})
	}
	if !f.watermarks.published && !f.publication.allTables {
		unpublished = append([]string{wm}, unpublished...)
		if !wmOwned {
			notOwned = append(notOwned, wm)
		}
	}

	// The publication.
	asAdmin := func(sql string) string {
		return "run as a superuser or the owner of the tables: " + strings.Join(append(adminSetup, sql), "; ")
	}
	if !f.publication.exists {
		published := append([]string{wm}, quotedNames(tables)...)
		create := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish_via_partition_root = true)", pub, strings.Join(published, ", "))
		var why []string
		if !f.createInDatabase {
			why = append(why, fmt.Sprintf("it lacks the CREATE privilege on database %q", db.cfg.Database))
		}
		if !wmOwned {
			notOwned = appendNew(notOwned, wm)
		}
		if len(notOwned) > 0 {
			why = append(why, "it does not own "+strings.Join(notOwned, ", "))
		}
		if len(why) == 0 {
			p.changes = append(p.changes, create)
			return
		}
		p.problems = append(p.problems, problem{
			fmt.Sprintf("publication %q does not exist, and user %q may not create it (%s)", pubName, db.cfg.User, strings.Join(why, "; ")),
			asAdmin(create),
		})
		return
	}
	if !f.publication.allActions {
		p.problems = append(p.problems, problem{
			fmt.Sprintf("publication %q does not publish all of inserts, updates and deletes", pubName),
			fmt.Sprintf("run ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')", pub),
		})
	}
	if len(unpublished) == 0 {
		return
	}
	add := fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pub, strings.Join(unpublished, ", "))
	var why []string
	if !f.publication.owned {
		why = append(why, "only the publication's owner may add tables to it")
	}
	var unpublishedNotOwned []string
	for _, name := range unpublished {
		if slices.Contains(notOwned, name) {
			unpublishedNotOwned = append(unpublishedNotOwned, name)
		}
	}
	if len(unpublishedNotOwned) > 0 {
		why = append(why, "it does not own "+strings.Join(unpublishedNotOwned, ", "))
	}
	if len(why) == 0 {
		p.changes = append(p.changes, add)
		return
	}
	p.problems = append(p.problems, problem{
		fmt.Sprintf("table(s) %s are not in publication %q, and user %q may not add them (%s)", strings.Join(unpublished, ", "), pubName, db.cfg.User, strings.Join(why, "; ")),
		asAdmin(add),
	})
}

func quotedNames(tables []*discovery.Table) []string {
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = t.QuotedName()
	}
	return out
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
