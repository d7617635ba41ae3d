package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"
)

// slotLostError reports the invalidated slot, and why when known (see
// slotstatus.go: what the server says depends on its major).
func (db *Database) slotLostError(ctx context.Context, slot string) error {
	why := db.slotInvalidation(ctx)
	if why == "" {
		why = "wal_status 'lost', usually max_slot_wal_keep_size"
	}
	if db.mode == ShellMode {
		return fmt.Errorf("replication slot %q was invalidated by PostgreSQL (%s): %s", slot, why, db.mode.slotRecovery())
	}
	return fmt.Errorf("replication slot %q was invalidated by PostgreSQL (%s): %s, after dropping the slot", slot, why, db.mode.slotRecovery())
}

// ensureSlot checks the replication slot against the capture's cursor. A
// new capture (no cursor) gets a fresh slot; a resumed one needs its slot
// intact and not ahead of the cursor, or changes would be silently lost.
//
// A new capture that finds a slot already there drops it only when the
// mode allows: a runtime's empty state means a new capture (with a
// warning naming what is dropped), while the capture command's may be a
// forgotten --state, so it stops unless reset asks to start over.
func (db *Database) ensureSlot(ctx context.Context, cursor string, reset bool) error {
	slot := db.cfg.Advanced.SlotName
	var (
		dbName, plugin, walStatus, confirmed string
		activePID                            *int32
	)
	err := db.conn.QueryRow(ctx, `SELECT database, COALESCE(plugin, ''), COALESCE(wal_status, ''),
			COALESCE(confirmed_flush_lsn::text, ''), active_pid
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&dbName, &plugin, &walStatus, &confirmed, &activePID)
	missing := errors.Is(err, pgx.ErrNoRows)
	if err != nil && !missing {
		return fmt.Errorf("looking up replication slot %q: %w", slot, err)
	}
	switch {
	case !missing && dbName != db.cfg.Database:
		return fmt.Errorf("replication slot %q belongs to database %q, not %q: choose another advanced.slotName for this capture", slot, dbName, db.cfg.Database)
	case !missing && activePID != nil:
		return fmt.Errorf("replication slot %q is in use by another process (pid %d): is another capture running with the same advanced.slotName?", slot, *activePID)
	case !missing && plugin != "pgoutput":
		return fmt.Errorf("replication slot %q uses the %q plugin, not pgoutput: drop it or choose another advanced.slotName", slot, plugin)
	case missing && cursor != "":
		return fmt.Errorf("replication slot %q no longer exists, but the capture's checkpoint resumes from %s: %s", slot, cursor, db.mode.slotRecovery())
	case !missing && walStatus == "lost" && cursor != "":
		return db.slotLostError(ctx, slot)
	case cursor == "":
		// A new capture starts its stream where its backfills start: now.
		if !missing {
			if err := db.dropStaleSlot(ctx, slot, confirmed, reset); err != nil {
				return err
			}
		}
		if err := db.createSlot(ctx, slot); err != nil {
			return err
		}
		db.log.WithField("slot", slot).Info("created replication slot")
		return nil
	}
	want, err := pglogrepl.ParseLSN(cursor)
	if err != nil {
		return fmt.Errorf("the capture's checkpointed cursor %q is not an LSN: %w", cursor, err)
	}
	have, err := pglogrepl.ParseLSN(confirmed)
	if err != nil {
		return fmt.Errorf("replication slot %q has no confirmed position", slot)
	}
	if have > want {
		return fmt.Errorf("replication slot %q has been advanced to %s, past the capture's checkpoint at %s, so the changes in between are gone: %s", slot, have, want, db.mode.slotRecovery())
	}
	return db.checkSlotFailover(ctx, slot)
}

// dropStaleSlot drops the slot that a capture starting without state finds
// (confirmed is its confirmed_flush_lsn), if the mode allows it.
func (db *Database) dropStaleSlot(ctx context.Context, slot, confirmed string, reset bool) error {
	switch {
	case db.mode == ShellMode && !reset:
		return fmt.Errorf("replication slot %q already exists (confirmed up to %s), but this capture starts without a state (no --state, or its file does not exist yet): the slot may hold the unread changes of a stopped capture, so it is left alone; resume that capture with --state FILE, or start over with --reset, which drops the slot and backfills every table again (the stopped capture can then never resume)",
			slot, cmp.Or(confirmed, "nothing"))
	case db.mode == ShellMode:
		db.log.WithFields(logrus.Fields{"slot": slot, "confirmed_flush_lsn": confirmed}).Info("--reset: dropping the replication slot to start over")
	default:
		db.log.WithFields(logrus.Fields{"slot": slot, "confirmed_flush_lsn": confirmed}).Warn("dropping the replication slot left by an earlier capture: this capture starts without state (it is new, or its backfill counters were bumped), so the changes the slot holds are discarded and no earlier capture can resume from it")
	}
	if _, err := db.conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
		return fmt.Errorf("dropping replication slot %q to start a new capture: %w", slot, err)
	}
	return nil
}

// explainFailure translates a capture failure that the replication slot
// explains: PostgreSQL ends the stream of a slot it invalidates (or that is
// dropped) with a bare "terminating connection", which says nothing of why.
func (db *Database) explainFailure(ctx context.Context, err error) error {
	if db.conn == nil || db.conn.IsClosed() {
		return err // the connection failed too: nothing to ask
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	slot := db.cfg.Advanced.SlotName
	var walStatus string
	qerr := db.conn.QueryRow(ctx, "SELECT COALESCE(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&walStatus)
	// PostgreSQL ends the walsender of a slot it invalidates before marking
	// the slot lost, so a slot still 'unreserved' is looked at again.
	for qerr == nil && walStatus == "unreserved" && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		qerr = db.conn.QueryRow(ctx, "SELECT COALESCE(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&walStatus)
	}
	switch {
	case errors.Is(qerr, pgx.ErrNoRows):
		return fmt.Errorf("replication slot %q was dropped while the capture was running: %s (%w)", slot, db.mode.slotRecovery(), err)
	case qerr == nil && walStatus == "lost":
		return fmt.Errorf("%w (%w)", db.slotLostError(ctx, slot), err)
	}
	return err
}
