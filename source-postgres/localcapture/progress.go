package localcapture

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"pgcapture/sqlcapture"
)

// StatusInterval is how often a person at a terminal is told how the
// capture advances, and lagHeartbeat how often a capture that has caught
// up says so again.
const (
	StatusInterval = 2 * time.Second
	lagHeartbeat   = 30 * time.Second
)

// Progress tells a person at a terminal how the capture advances: every
// StatusInterval a line per backfilling table, with its estimated size and
// time left, and how far behind the server the capture is (while it is
// behind, and every lagHeartbeat once caught up); and a line when a
// table's backfill is done, from the state at each checkpoint.
type Progress struct {
	w     io.Writer
	names map[string]string // state key → schema.table
	now   func() time.Time

	mu        sync.Mutex // the engine's checkpoints and the status reports write lines
	pending   map[string]backfillStart
	lagShown  time.Time
	lagBehind bool // the last lag line said the capture was behind
}

var _ sqlcapture.ProgressObserver = (*Progress)(nil)

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
	start := p.now()
	for key, name := range names {
		if slices.Contains(skipped, name) {
			continue
		}
		s := state.Streams[key]
		if s == nil {
			p.pending[key] = backfillStart{at: start}
		} else if s.Mode == sqlcapture.ModeBackfill {
			p.pending[key] = backfillStart{at: start, rows: s.Backfilled}
		}
	}
	return p
}

// update prints a line for each table whose backfill state shows done.
func (p *Progress) update(state sqlcapture.State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for _, key := range slices.Sorted(maps.Keys(p.pending)) {
		s := state.Streams[key]
		if s == nil || s.Mode != sqlcapture.ModeActive {
			continue
		}
		start := p.pending[key]
		fmt.Fprintln(p.w, formatDone(p.names[key], s.Backfilled, s.Backfilled-start.rows, now.Sub(start.at)))
		delete(p.pending, key)
	}
}

// ObserveProgress implements sqlcapture.ProgressObserver.
func (p *Progress) ObserveProgress(now time.Time, pr sqlcapture.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range pr.Backfills {
		fmt.Fprintln(p.w, formatBackfill(b, now))
	}
	behind := pr.BytesBehind() > 0
	if len(pr.Backfills) > 0 || behind || p.lagBehind || now.Sub(p.lagShown) >= lagHeartbeat {
		fmt.Fprintln(p.w, formatLag(pr, now))
		p.lagShown, p.lagBehind = now, behind
	}
}

// formatBackfill describes a table's backfill against its estimated size.
func formatBackfill(b sqlcapture.BackfillProgress, now time.Time) string {
	var out strings.Builder
	fmt.Fprintf(&out, "backfilling %s: %s", b.Stream, groupDigits(b.Rows))
	if b.EstimatedRows > b.Rows {
		fmt.Fprintf(&out, " of about %s rows (%d%%)", groupDigits(b.EstimatedRows), 100*b.Rows/b.EstimatedRows)
	} else {
		out.WriteString(" rows so far")
	}
	if rate := b.Rate(now); rate >= 1 {
		fmt.Fprintf(&out, ", %s rows/s", groupDigits(int64(rate)))
	}
	if left, ok := b.Remaining(now); ok {
		fmt.Fprintf(&out, ", about %s left", left.Round(time.Second))
	}
	return out.String()
}

// formatLag says how far behind the server the capture is: the WAL the
// server has that the capture has not emitted, and how long ago the last
// emitted transaction committed.
func formatLag(p sqlcapture.Progress, now time.Time) string {
	switch {
	case p.SourceEnd == 0:
		return "lag: not known yet (the server has not reported its WAL position)"
	case p.BytesBehind() == 0:
		return "lag: none, caught up with the server's WAL"
	}
	behind := fmt.Sprintf("lag: %s bytes of WAL behind the server", groupDigits(int64(p.BytesBehind())))
	if d := p.Behind(now); d > 0 {
		behind += fmt.Sprintf(", the last emitted commit is %s old", d.Round(100*time.Millisecond))
	}
	return behind
}

// formatDone describes a finished backfill: rows in all, and the rate of
// the recent rows, read in elapsed.
func formatDone(table string, rows, recent int64, elapsed time.Duration) string {
	rate := ""
	if elapsed >= time.Millisecond && recent > 0 {
		rate = ", " + groupDigits(int64(float64(recent)/elapsed.Seconds())) + " rows/s"
	}
	return fmt.Sprintf("backfilled %s: %s rows in %s%s", table, groupDigits(rows), elapsed.Round(100*time.Millisecond), rate)
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
