package postgres

import (
	"context"
	"fmt"

	"pgcapture/source-postgres/pgversion"
)

// slotInvalidationQuery returns why PostgreSQL invalidated slot $1, or ""
// while it is usable, in the words of 17's invalidation_reason. Earlier
// majors say only that the slot is 'lost' (wal_status), whatever the
// reason: 16's conflicting is true for every invalidated logical slot, not
// only for recovery conflicts as from 17 on, so it tells nothing more.
func slotInvalidationQuery(server pgversion.Server) string {
	if server.Has(pgversion.SlotInvalidationReason) {
		return `SELECT coalesce(invalidation_reason, '') FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`
	}
	return `SELECT CASE WHEN wal_status = 'lost' THEN 'lost' ELSE '' END
		FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`
}

// slotInvalidation returns why the slot was invalidated, explained, or ""
// if it was not (or cannot be read).
func (db *Database) slotInvalidation(ctx context.Context) string {
	var reason string
	if err := db.conn.QueryRow(ctx, slotInvalidationQuery(db.server), db.cfg.Advanced.SlotName).Scan(&reason); err != nil {
		return ""
	}
	return explainInvalidation(reason)
}

// explainInvalidation says what an invalidation_reason means to a user.
func explainInvalidation(reason string) string {
	switch reason {
	case "":
		return ""
	case "wal_removed":
		return "its WAL was removed (wal_status 'lost'), usually because it fell behind by more than max_slot_wal_keep_size; raise that setting (-1: no limit) so that it does not happen again"
	case "rows_removed":
		return "on this standby, the primary removed rows the slot still needed (a recovery conflict: set hot_standby_feedback = on and use a physical slot between standby and primary)"
	case "wal_level_insufficient":
		return "the primary's wal_level is no longer logical; set it back to logical (and restart) before capturing again"
	case "idle_timeout":
		return "invalidation_reason 'idle_timeout': no capture read from it for longer than idle_replication_slot_timeout; raise idle_replication_slot_timeout (0 turns it off) above the longest time the capture may be stopped, so that it does not happen again"
	case "lost":
		return "wal_status 'lost': usually it fell behind by more than max_slot_wal_keep_size; on a standby, a recovery conflict"
	}
	return fmt.Sprintf("invalidation_reason %q", reason)
}
