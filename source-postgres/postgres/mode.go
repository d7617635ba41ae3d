package postgres

// Mode is who runs a capture: a Flow runtime, or a person at a shell. It
// decides what a capture started without state may do to an existing
// replication slot, and the words its recovery advice uses: a runtime user
// re-backfills by bumping backfill counters, a shell user has a state file
// and flags.
type Mode int

const (
	// RuntimeMode is a capture driven by a Flow runtime (the open request).
	// The runtime owns the state: an empty one is a new capture, or one
	// whose backfills were restarted, so a slot left by an earlier capture
	// is dropped and created anew.
	RuntimeMode Mode = iota
	// ShellMode is `source-postgres capture`. An empty state may only mean
	// that the state file was forgotten, so an existing slot, which may
	// hold a stopped capture's unread changes, is dropped only on --reset.
	ShellMode
)

// slotRecovery is how a user recovers from a slot that can no longer replay
// the changes the capture's checkpoint expects.
func (m Mode) slotRecovery() string {
	if m == ShellMode {
		return "to recover, start over with --reset (it drops the slot and backfills every table again; deleting the state file alone is not enough while the slot exists): the changes made while the slot was unusable cannot be replayed"
	}
	return "to recover, re-backfill every binding (bump their backfill counters, or reset the capture's state): the changes made while the slot was unusable cannot be replayed"
}

// rebackfillTable is how a user backfills one table again, in the words of
// the mode.
func (m Mode) rebackfillTable() string {
	if m == ShellMode {
		return "run again with --reset to backfill every table again"
	}
	return "bump the binding's backfill counter to backfill it again"
}
