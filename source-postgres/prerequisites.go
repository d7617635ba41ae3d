package main

import (
	"context"
	"fmt"
	"strings"

	"pgcapture/source-postgres/discovery"
)

// checkPrerequisites reports every reason the capture of tables cannot run.
func (db *database) checkPrerequisites(ctx context.Context, tables []*discovery.Table) error {
	var problems []string
	var walLevel string
	if err := db.conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("reading wal_level: %w", err)
	}
	if walLevel != "logical" {
		problems = append(problems, fmt.Sprintf("logical replication is not enabled: wal_level is %q; set it with ALTER SYSTEM SET wal_level = logical and restart PostgreSQL", walLevel))
	}
	var replicator bool
	err := db.conn.QueryRow(ctx, `SELECT rolreplication OR rolsuper OR pg_has_role(current_user, 'rds_replication', 'member') IS TRUE
		FROM pg_roles WHERE rolname = current_user`).Scan(&replicator)
	if err != nil {
		// rds_replication exists only on RDS: retry without it.
		err = db.conn.QueryRow(ctx, `SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&replicator)
	}
	if err != nil {
		return fmt.Errorf("reading the attributes of user %q: %w", db.cfg.User, err)
	}
	if !replicator {
		problems = append(problems, fmt.Sprintf("user %q lacks the REPLICATION attribute: run ALTER USER %s WITH REPLICATION (on RDS/Aurora: GRANT rds_replication TO %s)", db.cfg.User, discovery.QuoteIdent(db.cfg.User), discovery.QuoteIdent(db.cfg.User)))
	}
	pub := db.cfg.Advanced.PublicationName
	var exists bool
	if err := db.conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", pub).Scan(&exists); err != nil {
		return fmt.Errorf("looking up publication %q: %w", pub, err)
	}
	if !exists {
		problems = append(problems, fmt.Sprintf("publication %q does not exist: create it with CREATE PUBLICATION %s FOR TABLE %s, <your tables> WITH (publish_via_partition_root = true)", pub, discovery.QuoteIdent(pub), db.quotedWatermarks()))
	}
	if len(problems) > 0 {
		return fmt.Errorf("the capture cannot run:\n - %s", strings.Join(problems, "\n - "))
	}
	return nil
}

func (db *database) ensureWatermarks(ctx context.Context) error {
	wm := db.quotedWatermarks()
	create := "CREATE TABLE IF NOT EXISTS " + wm + " (slot TEXT PRIMARY KEY, watermark TEXT)"
	if _, err := db.conn.Exec(ctx, create); err != nil {
		var exists bool
		if qerr := db.conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", wm).Scan(&exists); qerr != nil || !exists {
			return fmt.Errorf("the watermarks table %s does not exist and user %q cannot create it: run %s; GRANT ALL PRIVILEGES ON TABLE %s TO %s (%v)", wm, db.cfg.User, create, wm, discovery.QuoteIdent(db.cfg.User), err)
		}
	}
	pub := db.cfg.Advanced.PublicationName
	var published bool
	err := db.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
		pub, db.watermarks().Schema, db.watermarks().Table).Scan(&published)
	if err != nil {
		return fmt.Errorf("checking that the watermarks table is in publication %q: %w", pub, err)
	}
	if !published {
		alter := "ALTER PUBLICATION " + discovery.QuoteIdent(pub) + " ADD TABLE " + wm
		if _, err := db.conn.Exec(ctx, alter); err != nil {
			return fmt.Errorf("the watermarks table %s is not in publication %q and user %q cannot add it: run %s (%v)", wm, pub, db.cfg.User, alter, err)
		}
	}
	return nil
}
