package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/discovery"
)

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

func (p *prerequisites) add(what, fix string) {
	p.problems = append(p.problems, problem{what, fix})
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
	capture, err := db.inspectCapture(ctx, tables)
	if err != nil {
		return nil, err
	}
	db.captureProblems(p, capture, tables)
	return p, nil
}

// serverProblems are what keeps any capture from running on the server as
// the user: its settings, the user's role and the replication slot.
func (db *Database) serverProblems(f serverFacts) []problem {
	p := &prerequisites{}
	settingsProblems(p, f)
	db.roleProblems(p, f)
	db.slotProblems(p, f)
	db.standbyProblems(p, f.standby)
	if pr := db.failoverProblem(); pr != nil {
		p.add(pr.what, pr.fix)
	}
	for _, note := range db.failoverNotes(f.failover) {
		db.log.Warn(note)
	}
	return p.problems
}

// pollInstead ends the fix of a problem that polling avoids.
const pollInstead = `; or poll the tables instead: set each binding's "mode" to "Polling" (see "Capturing without logical replication")`

func settingsProblems(p *prerequisites, f serverFacts) {
	if f.walLevel != "logical" {
		p.add(fmt.Sprintf("logical replication is not enabled: wal_level is %q", f.walLevel),
			"run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL (Amazon RDS and Aurora: set rds.logical_replication = 1 in the parameter group and reboot; Google Cloud SQL: set the flag cloudsql.logical_decoding to on; Azure: set the server parameter wal_level to logical)"+pollInstead)
	}
}

func (db *Database) roleProblems(p *prerequisites, f serverFacts) {
	if !f.replication {
		user := pgx.Identifier{db.cfg.User}.Sanitize()
		p.add(fmt.Sprintf("user %q lacks the REPLICATION attribute", db.cfg.User),
			fmt.Sprintf("run ALTER USER %s WITH REPLICATION (Amazon RDS and Aurora: GRANT rds_replication TO %s)", user, user)+pollInstead)
	}
}

// slotProblems report a slot of the configured name that the capture
// cannot use. A missing slot is no problem: the capture creates it.
func (db *Database) slotProblems(p *prerequisites, f serverFacts) {
	slot := db.cfg.Advanced.SlotName
	switch {
	case f.slotType == "":
	case f.slotType != "logical":
		p.add(fmt.Sprintf("replication slot %q is a %s slot", slot, f.slotType),
			`set "advanced.slotName" to a name no other slot of the server has`)
	case f.slotDatabase != db.cfg.Database:
		p.add(fmt.Sprintf("replication slot %q belongs to database %q, not %q", slot, f.slotDatabase, db.cfg.Database),
			`set "advanced.slotName" to a name of this capture's own (slot names are shared by all databases of a server)`)
	case f.slotPlugin != "pgoutput":
		p.add(fmt.Sprintf("replication slot %q uses the %q plugin, not pgoutput", slot, f.slotPlugin),
			fmt.Sprintf(`if nothing else uses it, drop it with SELECT pg_drop_replication_slot('%s'); or set "advanced.slotName" to another name`, slot))
	}
}

// captureProblems adds to p what the capture of tables lacks, and the
// changes that fix what the user may fix.
func (db *Database) captureProblems(p *prerequisites, f *captureFacts, tables []*discovery.Table) {
	access := tableAccessOf(f, tables)
	db.tableAccessProblems(p, access)
	// A standby's fences need no watermarks table (standby.go).
	var wm watermarksPlan
	if !db.standby {
		wm = db.watermarksProblems(p, f)
	}
	// The watermarks table is published with the captured tables, and
	// first, unless the publication is FOR ALL TABLES.
	if !db.standby && !f.watermarks.published && !f.publication.allTables {
		name := db.quotedWatermarks()
		access.unpublished = append([]string{name}, access.unpublished...)
		if !wm.owned {
			access.notOwned = append(access.notOwned, name)
		}
	}
	db.publicationProblems(p, f, tables, access, wm)
	db.publicationFilterProblems(p, f, tables)
	db.standbyChanges(p)
}

// tableAccess is what the user lacks on the captured tables, as quoted
// names.
type tableAccess struct {
	noUsage     []string // schemas it may not use
	unreadable  []string // tables it may not read
	notOwned    []string // tables it does not own, which only their owner may publish
	unpublished []string // tables not in the publication
}

func tableAccessOf(f *captureFacts, tables []*discovery.Table) tableAccess {
	var a tableAccess
	for i, t := range tables {
		r := f.tables[i]
		if !r.exists {
			// Dropped since it was discovered: the capture fails on it later
			// with the table's name, as it would on a drop at any time.
			continue
		}
		if !r.usage {
			a.noUsage = appendNew(a.noUsage, pgx.Identifier{t.Schema}.Sanitize())
		}
		if !r.selectable {
			a.unreadable = append(a.unreadable, t.QuotedName())
		}
		if !r.owned {
			a.notOwned = append(a.notOwned, t.QuotedName())
		}
		if !r.published {
			a.unpublished = append(a.unpublished, t.QuotedName())
		}
	}
	return a
}

// tableAccessProblems report the captured tables the user cannot read.
func (db *Database) tableAccessProblems(p *prerequisites, a tableAccess) {
	if len(a.noUsage) == 0 && len(a.unreadable) == 0 {
		return
	}
	user := pgx.Identifier{db.cfg.User}.Sanitize()
	var grants []string
	if len(a.noUsage) > 0 {
		grants = append(grants, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", strings.Join(a.noUsage, ", "), user))
	}
	if len(a.unreadable) > 0 {
		grants = append(grants, fmt.Sprintf("GRANT SELECT ON TABLE %s TO %s", strings.Join(a.unreadable, ", "), user))
	}
	what := fmt.Sprintf("user %q cannot read table(s) %s", db.cfg.User, strings.Join(a.unreadable, ", "))
	if len(a.unreadable) == 0 {
		what = fmt.Sprintf("user %q may not use schema(s) %s of the captured tables", db.cfg.User, strings.Join(a.noUsage, ", "))
	}
	p.add(what, "run "+strings.Join(grants, "; "))
}

// watermarksPlan is how the capture will have its watermarks table.
type watermarksPlan struct {
	// owned is whether the user owns the table, or will once the capture
	// creates it, and so may publish it.
	owned bool
	// adminSetup is what whoever fixes the publication must run first,
	// because the table is missing and the user may not create it.
	adminSetup []string
}

// watermarksProblems report what keeps the user from writing watermarks,
// or plan the table's creation when the user may create it.
func (db *Database) watermarksProblems(p *prerequisites, f *captureFacts) watermarksPlan {
	user := pgx.Identifier{db.cfg.User}.Sanitize()
	wm := db.quotedWatermarks()
	schema := pgx.Identifier{db.watermarks().Schema}.Sanitize()
	create := "CREATE TABLE IF NOT EXISTS " + wm + " (slot TEXT PRIMARY KEY, watermark TEXT)"
	grant := fmt.Sprintf("GRANT SELECT, INSERT, UPDATE ON TABLE %s TO %s", wm, user)
	plan := watermarksPlan{owned: f.watermarks.owned}
	switch w := f.watermarks; {
	case !w.exists && !f.watermarksSchema.exists:
		p.add(fmt.Sprintf("the schema %s of the watermarks table does not exist", schema),
			fmt.Sprintf(`run CREATE SCHEMA %s; or set "advanced.watermarksTable" to a table in an existing schema`, schema))
	case !w.exists && f.watermarksSchema.create:
		// A table the user creates is its own, which it may then publish.
		p.changes = append(p.changes, create)
		plan.owned = true
	case !w.exists:
		plan.adminSetup = []string{create, grant}
		p.add(fmt.Sprintf("the watermarks table %s does not exist, and user %q may not create it in schema %s", wm, db.cfg.User, schema),
			fmt.Sprintf("run %s; %s", create, grant))
	case !w.usage || !w.selectable || !w.writable:
		if !w.usage {
			grant = fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s; %s", schema, user, grant)
		}
		p.add(fmt.Sprintf("user %q cannot write to the watermarks table %s", db.cfg.User, wm), "run "+grant)
	}
	return plan
}

// publicationProblems report what keeps the publication from publishing
// the watermarks table and the captured tables, or plan the statements
// that create it or add the tables to it when the user may run them.
func (db *Database) publicationProblems(p *prerequisites, f *captureFacts, tables []*discovery.Table, a tableAccess, wm watermarksPlan) {
	name := db.cfg.Advanced.PublicationName
	pub := pgx.Identifier{name}.Sanitize()
	if !f.publication.exists {
		var why []string
		if !f.createInDatabase {
			why = append(why, fmt.Sprintf("it lacks the CREATE privilege on database %q", db.cfg.Database))
		}
		published := append([]string{db.quotedWatermarks()}, quotedNames(tables)...)
		publicationChange(p,
			fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish_via_partition_root = true)", pub, strings.Join(published, ", ")),
			fmt.Sprintf("publication %q does not exist, and user %q may not create it", name, db.cfg.User),
			why, a.notOwned, wm.adminSetup)
		return
	}
	if !f.publication.allActions {
		p.add(fmt.Sprintf("publication %q does not publish all of inserts, updates and deletes", name),
			fmt.Sprintf("run ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')", pub))
	}
	if len(a.unpublished) == 0 {
		return
	}
	var why []string
	if !f.publication.owned {
		why = append(why, "only the publication's owner may add tables to it")
	}
	var notOwned []string
	for _, t := range a.unpublished {
		if slices.Contains(a.notOwned, t) {
			notOwned = append(notOwned, t)
		}
	}
	unpublished := strings.Join(a.unpublished, ", ")
	publicationChange(p,
		fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pub, unpublished),
		fmt.Sprintf("table(s) %s are not in publication %q, and user %q may not add them", unpublished, name, db.cfg.User),
		why, notOwned, wm.adminSetup)
}

// publicationChange plans sql, which creates or alters the publication, as
// a change the capture runs itself. If the user may not run it, for the
// reasons in why or because it does not own the tables in notOwned (only
// their owner may publish them), it adds the problem what instead, whose
// fix is to run adminSetup and sql as an administrator.
func publicationChange(p *prerequisites, sql, what string, why, notOwned, adminSetup []string) {
	if len(notOwned) > 0 {
		why = append(why, "it does not own "+strings.Join(notOwned, ", "))
	}
	if len(why) == 0 {
		p.changes = append(p.changes, sql)
		return
	}
	p.add(fmt.Sprintf("%s (%s)", what, strings.Join(why, "; ")),
		"run as a superuser or the owner of the tables: "+strings.Join(slices.Concat(adminSetup, []string{sql}), "; "))
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
