package localcapture

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"pgcapture/sqlcapture"
)

// progressInterval is how often a table still backfilling gets a line.
const progressInterval = 2 * time.Second

// Progress tells a person at a terminal how the backfills advance,
// from the state at each checkpoint: a line per backfilling table every
// progressInterval, and one when a table's backfill is done.
type Progress struct {
	w       io.Writer
	names   map[string]string // state key → schema.table
	now     func() time.Time
	pending map[string]backfillStart
	printed time.Time // when the last periodic lines were printed
}

// backfillStart is where a table's backfill stood when this run first saw
// it, which is what its rate is measured from.
type backfillStart struct {
	at   time.Time
	rows int64
}

// NewProgress writes to w the progress of the tables of names (state key →
// schema.table) that state leaves to backfill, except those whose backfill
// is skipped.
func NewProgress(w io.Writer, names map[string]string, state sqlcapture.State, skipped []string) *Progress {
	p := &Progress{w: w, names: names, now: time.Now, pending: map[string]backfillStart{}}
	p.printed = p.now()
	for key, name := range names {
		if slices.Contains(skipped, name) {
			continue
		}
		s := state.Streams[key]
		if s == nil {
			p.pending[key] = backfillStart{at: p.printed}
		} else if s.Mode == sqlcapture.ModeBackfill {
			p.pending[key] = backfillStart{at: p.printed, rows: s.Backfilled}
		}
	}
	return p
}

// update prints the progress that state shows.
func (p *Progress) update(state sqlcapture.State) {
	now := p.now()
	periodic := now.Sub(p.printed) >= progressInterval
	if periodic {
		p.printed = now
	}
	for _, key := range slices.Sorted(maps.Keys(p.pending)) {
		s := state.Streams[key]
		if s == nil {
			continue
		}
		start := p.pending[key]
		switch {
		case s.Mode == sqlcapture.ModeActive:
			fmt.Fprintln(p.w, formatProgress(p.names[key], s.Backfilled, s.Backfilled-start.rows, now.Sub(start.at), true))
			delete(p.pending, key)
		case periodic:
			fmt.Fprintln(p.w, formatProgress(p.names[key], s.Backfilled, s.Backfilled-start.rows, now.Sub(start.at), false))
		}
	}
}

// formatProgress describes a table's backfill: rows in all, and the rate of
// the recent rows, read in elapsed.
func formatProgress(table string, rows, recent int64, elapsed time.Duration, done bool) string {
	rate := ""
	if elapsed >= time.Millisecond && recent > 0 {
		rate = ", " + groupDigits(int64(float64(recent)/elapsed.Seconds())) + " rows/s"
	}
	if done {
		return fmt.Sprintf("backfilled %s: %s rows in %s%s", table, groupDigits(rows), elapsed.Round(100*time.Millisecond), rate)
	}
	return fmt.Sprintf("backfilling %s: %s rows so far%s", table, groupDigits(rows), rate)
}

// groupDigits writes n with thousands separated by commas: 1,234,567.
func groupDigits(n int64) string {
	digits := strconv.FormatInt(n, 10)
	sign := ""
	if n < 0 {
		sign, digits = "-", digits[1:]
	}
	var out []byte
	for i := range len(digits) {
		if i > 0 && (len(digits)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, digits[i])
	}
	return sign + string(out)
}
