package backfill

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// In PostgreSQL a transaction's commit record reaches the WAL, and so the
// replication stream, before the transaction stops being "in progress" for
// new snapshots (a synchronous-replication wait widens that window from
// microseconds to as long as the standby takes). A chunk read under a
// snapshot that cannot yet see such a transaction would emit a row older
// than the change the stream already delivered for it, and the older row
// would win. So the replication reader records the id of every transaction
// it delivers, and a chunk is only read under a snapshot in which none of
// them is still in progress.

// CommittedXIDs remembers the transaction ids recently delivered by the
// replication stream. It is safe for concurrent use.
type CommittedXIDs struct {
	mu   sync.Mutex
	xids []uint32
}

// recentXIDs bounds what is remembered between two chunks. A transaction
// delivered that many transactions ago that is still invisible would need a
// synchronous-replication stall spanning all of them; meanwhile memory stays
// constant during long streaming-only stretches.
const recentXIDs = 1 << 16

// NewCommittedXIDs returns an empty record.
func NewCommittedXIDs() *CommittedXIDs { return &CommittedXIDs{} }

// Committed records that the stream delivered transaction xid.
func (c *CommittedXIDs) Committed(xid uint32) {
	c.mu.Lock()
	if len(c.xids) >= recentXIDs {
		c.xids = append(c.xids[:0], c.xids[len(c.xids)/2:]...)
	}
	c.xids = append(c.xids, xid)
	c.mu.Unlock()
}

// invisibleIn returns a delivered transaction that snap still sees as in
// progress, if any. Transactions older than the snapshot's xmin are visible
// to every later snapshot too, so they are forgotten.
func (c *CommittedXIDs) invisibleIn(snap snapshot) (uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.xids[:0]
	for _, xid := range c.xids {
		if int32(xid-snap.xmin) >= 0 {
			kept = append(kept, xid)
		}
	}
	c.xids = kept
	for _, xid := range c.xids {
		if snap.inProgress(xid) {
			return xid, true
		}
	}
	return 0, false
}

// snapshot is the part of pg_current_snapshot() that decides visibility,
// reduced to the 32-bit transaction ids the replication stream carries.
type snapshot struct {
	xmin, xmax uint32
	xip        []uint32
}

// parseSnapshot reads pg_current_snapshot()'s text form "xmin:xmax:xip,...",
// whose ids are 64-bit (epoch and 32-bit id).
func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("unexpected snapshot %q", s)
	}
	xid := func(p string) (uint32, error) {
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected snapshot %q: %w", s, err)
		}
		return uint32(v), nil
	}
	var snap snapshot
	var err error
	if snap.xmin, err = xid(parts[0]); err != nil {
		return snapshot{}, err
	}
	if snap.xmax, err = xid(parts[1]); err != nil {
		return snapshot{}, err
	}
	if parts[2] != "" {
		for _, p := range strings.Split(parts[2], ",") {
			v, err := xid(p)
			if err != nil {
				return snapshot{}, err
			}
			snap.xip = append(snap.xip, v)
		}
	}
	return snap, nil
}

// inProgress reports whether xid's effects are invisible to the snapshot.
// Ids compare modulo 2^32, as PostgreSQL compares them.
func (s snapshot) inProgress(xid uint32) bool {
	if int32(xid-s.xmin) < 0 {
		return false
	}
	if int32(xid-s.xmax) >= 0 {
		return true
	}
	for _, x := range s.xip {
		if x == xid {
			return true
		}
	}
	return false
}
