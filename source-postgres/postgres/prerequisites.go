package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
func (db *Database) checkServer(ctx context.Context) error {
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
func (db *Database) checkPrerequisites(ctx context.Context, tables []*discovery.Table) error {
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
func (db *Database) ensurePrerequisites(ctx context.Context, tables []*discovery.Table) error {
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
func (db *Database) inspect(ctx context.Context, tables []*discovery.Table) (*prerequisites, error) {
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

func (db *Database) serverProblems(f serverFacts) []problem {
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

// captureProblems adds to p what the capture of tables lacks, and the
// changes that fix what the user may fix.
func (db *Database) captureProblems(p *prerequisites, f *captureFacts, tables []*discovery.Table) {
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
