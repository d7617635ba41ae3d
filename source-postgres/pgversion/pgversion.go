// Package pgversion is the one statement of what differs between the
// PostgreSQL majors the connector supports, 13 to 18: the server's version,
// the oldest one supported, and each catalog column, function or protocol
// feature that appeared in a later major, by name. Queries ask a Server
// whether it Has a Feature rather than comparing version numbers.
package pgversion

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Minimum is the oldest supported server, as server_version_num: backfills
// take their snapshots with pg_current_snapshot() and read the replication
// slot's wal_status, both new in 13.
const Minimum = 130000

// Server is the version of a connected server.
type Server struct {
	// Num is server_version_num, e.g. 170010 for 17.10.
	Num int
	// Version is server_version, e.g. "17.10" or "16.4 (Debian 16.4-1)".
	Version string
}

// Read returns the version of the server conn is connected to.
func Read(ctx context.Context, conn *pgx.Conn) (Server, error) {
	var s Server
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version')`).Scan(&s.Num, &s.Version)
	if err != nil {
		return s, fmt.Errorf("reading the server's version: %w", err)
	}
	return s, nil
}

// Major returns the major version, e.g. 17.
func (s Server) Major() int { return s.Num / 10000 }

// Supported reports whether the connector supports the server.
func (s Server) Supported() bool { return s.Num >= Minimum }

// Unsupported says why a server older than Minimum is not supported and
// what to do about it, or returns "" for a supported one.
func (s Server) Unsupported() string {
	if s.Supported() {
		return ""
	}
	return fmt.Sprintf("PostgreSQL %s is not supported: the capture needs PostgreSQL %d or later "+
		"(backfills take their snapshots with pg_current_snapshot(), and slots report wal_status, both new in 13); upgrade the server",
		s.Version, Minimum/10000)
}

// Has reports whether the server has f.
func (s Server) Has(f Feature) bool { return s.Num >= f.Since() }

// A Feature is something a later major added that the connector uses or
// must account for.
type Feature int

const (
	// SlotTwoPhase: pg_replication_slots.two_phase, whether the slot
	// decodes prepared transactions at PREPARE (14).
	SlotTwoPhase Feature = iota
	// Multiranges: the multirange types, int4multirange and the rest (14).
	Multiranges
	// NumericInfinity: numeric's 'Infinity' and '-Infinity' (14).
	NumericInfinity
	// StreamingInProgress: pgoutput's protocol version 2 with streaming
	// 'on', which sends a large transaction while it is in progress
	// rather than spilling it to the server's disk until its commit (14).
	StreamingInProgress
	// PublicationRowFilters: pg_publication_rel.prqual, a publication's
	// WHERE clause per table (15).
	PublicationRowFilters
	// PublicationColumnLists: pg_publication_rel.prattrs, the columns a
	// publication publishes of a table (15).
	PublicationColumnLists
	// PublicationSchemas: pg_publication_namespace, FOR TABLES IN SCHEMA
	// (15).
	PublicationSchemas
	// DatabaseLocaleProvider: pg_database.datlocprovider, which says
	// whether the default collation is libc's or ICU's, and CREATE
	// DATABASE's LOCALE_PROVIDER (15).
	DatabaseLocaleProvider
	// NumericNegativeScale: numeric(p, s) with s < 0 or s > p (15).
	NumericNegativeScale
	// PublicationTablesViewLocks: pg_publication_tables opens (and so waits
	// for a lock on) every table it lists (16). The connector reads the
	// catalogs underneath instead.
	PublicationTablesViewLocks
	// SlotConflicting: pg_replication_slots.conflicting (16): in 16 true
	// for every invalidated logical slot, from 17 on only for one
	// invalidated by a recovery conflict on a standby.
	SlotConflicting
	// LogicalDecodingOnStandby: logical slots on a physical standby (16).
	LogicalDecodingOnStandby
	// SlotInvalidationReason: pg_replication_slots.invalidation_reason,
	// why the server invalidated a slot (17).
	SlotInvalidationReason
	// SlotFailover: pg_replication_slots.failover and the failover argument
	// of pg_create_logical_replication_slot, a slot that standbys
	// synchronize (17).
	SlotFailover
	// SlotSynced: pg_replication_slots.synced, a slot on a standby that
	// slot synchronization keeps (17).
	SlotSynced
	// PublicationGeneratedColumns: pg_publication.pubgencols, the
	// publish_generated_columns option, and generated columns named in
	// column lists (18). 18 also brings virtual generated columns
	// (attgenerated 'v', its default kind), which pgoutput never sends;
	// the catalog test attgenerated = 'v' needs no version check.
	PublicationGeneratedColumns
	// SlotIdleTimeout: idle_replication_slot_timeout, after which a
	// checkpoint invalidates an inactive slot (invalidation_reason
	// 'idle_timeout') (18).
	SlotIdleTimeout
)

// Since returns the server_version_num of the first release with f.
func (f Feature) Since() int {
	switch f {
	case SlotTwoPhase, Multiranges, NumericInfinity, StreamingInProgress:
		return 140000
	case PublicationRowFilters, PublicationColumnLists, PublicationSchemas, DatabaseLocaleProvider, NumericNegativeScale:
		return 150000
	case PublicationTablesViewLocks, SlotConflicting, LogicalDecodingOnStandby:
		return 160000
	case SlotInvalidationReason, SlotFailover, SlotSynced:
		return 170000
	case PublicationGeneratedColumns, SlotIdleTimeout:
		return 180000
	}
	panic(fmt.Sprintf("pgversion: unknown feature %d", int(f)))
}
