package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/pgversion"
)

// Failover slots (PostgreSQL 17): a logical slot created with failover =
// true is copied to standbys that run with sync_replication_slots = on, so
// that a promoted standby has the slot, at a position no later than the
// primary's, and the capture resumes on it from its checkpoint.

// failoverProblem says why advanced.failover_slot cannot be honoured on
// this server, or returns nil.
func (db *Database) failoverProblem() *problem {
	switch {
	case !db.cfg.Advanced.FailoverSlot:
		return nil
	case !db.server.Has(pgversion.SlotFailover):
		return &problem{fmt.Sprintf(`"advanced.failover_slot" needs PostgreSQL 17 or later, which can copy a slot to its standbys, but the server runs %s`, db.server.Version),
			"turn the option off, or upgrade to PostgreSQL 17"}
	case db.standby:
		return &problem{`"advanced.failover_slot" asks for a slot that standbys copy, but the server is itself a standby, where PostgreSQL creates no failover slots`,
			"capture from the primary, or turn the option off to capture from this standby"}
	}
	return nil
}

// failoverUnsupported is failoverProblem as one sentence, or "".
func (db *Database) failoverUnsupported() string {
	if pr := db.failoverProblem(); pr != nil {
		return pr.what + ": " + pr.fix
	}
	return ""
}

// createSlot creates the capture's logical slot, a failover slot when the
// configuration asks for one.
func (db *Database) createSlot(ctx context.Context, slot string) error {
	if why := db.failoverUnsupported(); why != "" {
		return errors.New(why)
	}
	sql := "SELECT pg_create_logical_replication_slot($1, 'pgoutput')"
	if db.cfg.Advanced.FailoverSlot {
		sql = "SELECT pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)"
	}
	if db.standby {
		return db.createStandbySlot(ctx, slot, sql)
	}
	if _, err := db.conn.Exec(ctx, sql, slot); err != nil {
		return fmt.Errorf("creating replication slot %q: %w", slot, err)
	}
	return nil
}

// checkSlotFailover makes an existing slot's failover property what the
// configuration asks for, as a slot created before the option was turned
// on would otherwise silently stay behind on a failover. On a standby it
// refuses a slot that slot synchronization keeps, which PostgreSQL lets no
// one decode until the standby is promoted.
func (db *Database) checkSlotFailover(ctx context.Context, slot string) error {
	if !db.server.Has(pgversion.SlotFailover) {
		return nil
	}
	var failover, synced bool
	err := db.conn.QueryRow(ctx, `SELECT failover, synced FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, slot).Scan(&failover, &synced)
	if err != nil {
		return fmt.Errorf("looking up replication slot %q: %w", slot, err)
	}
	switch {
	case db.standby && synced:
		return fmt.Errorf("replication slot %q on this standby is slot synchronization's copy of the primary's failover slot, which PostgreSQL lets no one read until the standby is promoted: capture from the primary, or set \"advanced.slotName\" to another name to capture from this standby with a slot of its own", slot)
	case failover == db.cfg.Advanced.FailoverSlot:
		return nil
	case db.standby:
		return nil // failoverUnsupported has said why, if the option is on
	}
	if why := db.failoverUnsupported(); why != "" {
		return errors.New(why)
	}
	// Only the replication protocol can change it (17's
	// ALTER_REPLICATION_SLOT), on a connection of the slot's database.
	pcfg, err := db.connConfig(true)
	if err != nil {
		return err
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("opening a replication connection to set the failover property of replication slot %q: %w", slot, config.ExplainConnectError(err, db.cfg))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	want := "false"
	if db.cfg.Advanced.FailoverSlot {
		want = "true"
	}
	if err := conn.Exec(ctx, fmt.Sprintf("ALTER_REPLICATION_SLOT %s (FAILOVER %s)", pgx.Identifier{slot}.Sanitize(), want)).Close(); err != nil {
		return fmt.Errorf("setting failover = %s on replication slot %q, as \"advanced.failover_slot\" asks: %w", want, slot, err)
	}
	db.log.WithField("slot", slot).WithField("failover", want).Info("changed the replication slot's failover property, as advanced.failover_slot asks")
	return nil
}

// failoverFacts are what decides whether a failover slot is kept by the
// standbys, as far as one server can tell.
type failoverFacts struct {
	// On a primary: synchronized_standby_slots, the physical slots whose
	// standbys must have received the WAL before a failover slot's
	// consumer does.
	synchronizedStandbySlots string
	// On a standby: whether it copies failover slots, and what that needs.
	syncReplicationSlots bool
	primarySlotName      string
	hotStandbyFeedback   bool
	// The configured slot's properties, when it exists.
	slotExists, slotFailover, slotSynced bool
}

const failoverQuery = `
SELECT coalesce(current_setting('synchronized_standby_slots', true), ''),
       coalesce(current_setting('sync_replication_slots', true), 'off') = 'on',
       coalesce(current_setting('primary_slot_name', true), ''),
       current_setting('hot_standby_feedback') = 'on',
       s.slot_name IS NOT NULL, coalesce(s.failover, false), coalesce(s.synced, false)
FROM (VALUES (1)) AS one (x)
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1`

func (db *Database) inspectFailover(ctx context.Context) (failoverFacts, error) {
	var f failoverFacts
	if !db.server.Has(pgversion.SlotFailover) {
		return f, nil
	}
	err := db.conn.QueryRow(ctx, failoverQuery, db.cfg.Advanced.SlotName).Scan(&f.synchronizedStandbySlots,
		&f.syncReplicationSlots, &f.primarySlotName, &f.hotStandbyFeedback, &f.slotExists, &f.slotFailover, &f.slotSynced)
	if err != nil {
		return f, fmt.Errorf("checking the failover settings: %w", err)
	}
	return f, nil
}

// failoverNotes say, for discovery and validation, whether a failover slot
// is in place and what is missing for a standby to take over the capture.
// They are warnings, not problems: the capture runs without them, and what
// the standby lacks cannot be seen from the primary.
func (db *Database) failoverNotes(f failoverFacts) []string {
	if !db.cfg.Advanced.FailoverSlot || !db.server.Has(pgversion.SlotFailover) || db.standby {
		return nil
	}
	slot := db.cfg.Advanced.SlotName
	var notes []string
	if f.slotExists && !f.slotFailover {
		notes = append(notes, fmt.Sprintf("replication slot %q exists without failover; the capture sets failover = true on it when it starts", slot))
	}
	if strings.TrimSpace(f.synchronizedStandbySlots) == "" {
		notes = append(notes, "synchronized_standby_slots is empty on the primary, so the capture may receive changes a standby has not yet received, and after a failover those changes would exist only downstream; set it to the standbys' physical slots: ALTER SYSTEM SET synchronized_standby_slots = '<physical slot>'; SELECT pg_reload_conf()")
	}
	notes = append(notes, "each standby that is to take over needs sync_replication_slots = on, hot_standby_feedback = on, primary_slot_name set, and a dbname in primary_conninfo; check them on the standby with SHOW, and there SELECT slot_name, synced FROM pg_replication_slots shows the copy")
	return notes
}
