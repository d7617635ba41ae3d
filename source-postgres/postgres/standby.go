package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"pgcapture/source-postgres/pgversion"
)

// Capturing from a physical standby (PostgreSQL 16 and later decode on a
// standby). A standby cannot be written, so a backfill chunk cannot be
// fenced by a watermark row. It is fenced by a WAL position instead:
//
//  1. the chunk is read under a snapshot of the standby, which sees exactly
//     the transactions whose commit records the standby had replayed when
//     the snapshot was taken (and, as on a primary, the chunk first waits
//     until every transaction the stream delivered is visible in it);
//  2. after the chunk, the fence position F is the standby's replay
//     position, pg_last_wal_replay_lsn(), read after the chunk's snapshot,
//     so every transaction visible to the chunk commits at or before F;
//  3. the stream is read until it has delivered every transaction that
//     commits at or before F: its first commit ending at or past F, or a
//     keepalive between transactions whose position has reached F (the
//     stream asks the server for one while a fence waits).
//
// So, as with a watermark, every change between the stream's position and
// F to a row at or below the chunk's last key is emitted after the chunk,
// and each backfilled row ends up as it was at F. Nothing is written on
// either server, and an idle primary does not hold the fence up: F is never
// past what the standby has replayed, which its walsender decodes without
// waiting for new WAL.

// fenceAtReplay fences at the standby's current replay position.
func (db *Database) fenceAtReplay(ctx context.Context, id string) error {
	if db.stream == nil {
		return errors.New("fencing a backfill chunk on the standby: the replication stream is not open")
	}
	var raw string
	if err := db.conn.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&raw); err != nil {
		return db.classify(fmt.Errorf("reading the standby's replay position: %w", err))
	}
	lsn, err := pglogrepl.ParseLSN(raw)
	if err != nil {
		return fmt.Errorf("the standby's replay position %q is not an LSN: %w", raw, err)
	}
	return db.stream.FenceAt(ctx, id, uint64(lsn))
}

// slotCreationHint is how long a slot's creation on a standby may wait
// before the log says why it waits.
const slotCreationHint = 5 * time.Second

// createStandbySlot creates the capture's slot on a standby. PostgreSQL
// creates it only once the standby replays a record of the primary's
// running transactions, which the primary writes every 15 seconds while it
// is busy, and not at all while it is idle: the log says so, and how to
// hurry it, if the wait is long.
func (db *Database) createStandbySlot(ctx context.Context, slot, sql string) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(slotCreationHint):
			db.log.WithField("slot", slot).Warn("creating the replication slot on this standby waits for the primary to log its running transactions, which an idle primary does not do by itself: run SELECT pg_log_standby_snapshot() on the primary to let it proceed")
		}
	}()
	_, err := db.conn.Exec(ctx, sql, slot)
	if err == nil {
		return nil
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok &&
		strings.Contains(pgErr.Message, "wal_level") && strings.Contains(pgErr.Message, "on the primary") {
		return fmt.Errorf("creating replication slot %q on this standby: the primary's wal_level is not logical, and a standby can decode only what its primary logs for logical decoding: run ALTER SYSTEM SET wal_level = logical on the primary and restart it (%w)", slot, err)
	}
	return fmt.Errorf("creating replication slot %q on this standby: %w", slot, err)
}

// standbyFacts describe the standby the capture runs on.
type standbyFacts struct {
	hotStandbyFeedback bool
	primarySlotName    string
}

func (db *Database) inspectStandby(ctx context.Context) (standbyFacts, error) {
	var f standbyFacts
	if !db.standby {
		return f, nil
	}
	err := db.conn.QueryRow(ctx, `SELECT current_setting('hot_standby_feedback') = 'on', coalesce(current_setting('primary_slot_name', true), '')`).
		Scan(&f.hotStandbyFeedback, &f.primarySlotName)
	if err != nil {
		return f, fmt.Errorf("checking the standby's settings: %w", err)
	}
	return f, nil
}

// standbyProblems report what keeps a capture from running on a standby.
// The primary's wal_level cannot be read on the standby: slot creation
// reports it (createStandbySlot).
func (db *Database) standbyProblems(p *prerequisites, f standbyFacts) {
	switch {
	case !db.standby:
		return
	case !db.server.Has(pgversion.LogicalDecodingOnStandby):
		p.add(fmt.Sprintf("the server is a standby (a read replica) running PostgreSQL %s, which cannot decode changes on a standby (16 and later can)", db.server.Version),
			"capture from the primary, or upgrade the standby and its primary to PostgreSQL 16 or later"+pollInstead)
	case !f.hotStandbyFeedback:
		p.add("the server is a standby without hot_standby_feedback, so the primary may vacuum away catalog rows the replication slot still needs, which invalidates the slot",
			"on the standby run ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf(); and give the standby a physical slot on the primary (primary_slot_name), so that the feedback holds across reconnections")
	case f.primarySlotName == "":
		db.log.Warn("the standby streams without a physical slot on the primary (primary_slot_name is empty): hot_standby_feedback holds only while the standby is connected, and a reconnection may let the primary vacuum rows the capture's slot needs, which invalidates it; set primary_slot_name on the standby")
	}
}

// standbyChanges turns the statements a capture would run to prepare the
// database into problems: a standby cannot run them, its primary must.
func (db *Database) standbyChanges(p *prerequisites) {
	if !db.standby || len(p.changes) == 0 {
		return
	}
	p.add("the server is a standby, where the capture cannot prepare the database itself",
		"run on the primary: "+strings.Join(p.changes, "; "))
	p.changes = nil
}
