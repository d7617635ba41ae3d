package sqlcapture

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Progress is how far a capture has come: how far behind its source it
// is, and how its backfills advance. The engine gathers it from the lag
// facts of Commit and Keepalive events and from its backfill chunks, and
// hands it to a ProgressObserver every Options.ProgressInterval.
type Progress struct {
	// SourceEnd is how far the source's change log extended, in bytes, when
	// the source last said (0: it has not said yet); Emitted is the log
	// position of the last transaction (or idle position) emitted.
	SourceEnd, Emitted uint64
	// LastCommit is when the last emitted transaction committed at the
	// source (zero: none yet in this run).
	LastCommit time.Time
	// Backfills are the tables still backfilling, in backfill order.
	Backfills []BackfillProgress
}

// BytesBehind is how much of the source's log lies past what was emitted.
func (p Progress) BytesBehind() uint64 {
	if p.SourceEnd > p.Emitted {
		return p.SourceEnd - p.Emitted
	}
	return 0
}

// Behind is how long before now the last emitted transaction committed,
// as Debezium's MilliSecondsBehindSource measures it; zero once the
// capture has emitted everything the source reported, since an idle
// source is not something to catch up with.
func (p Progress) Behind(now time.Time) time.Duration {
	if p.BytesBehind() == 0 || p.LastCommit.IsZero() || now.Before(p.LastCommit) {
		return 0
	}
	return now.Sub(p.LastCommit)
}

// BackfillProgress is one table's backfill.
type BackfillProgress struct {
	Stream StreamID
	// Rows have been backfilled so far; EstimatedRows is the table's size
	// as the database estimated it when the capture started (0: unknown).
	Rows, EstimatedRows int64
	// Since is when this run began backfilling the table, which then had
	// SinceRows rows backfilled: the rate is measured from there.
	Since     time.Time
	SinceRows int64
}

// Rate is the rows backfilled per second in this run.
func (b BackfillProgress) Rate(now time.Time) float64 {
	elapsed := now.Sub(b.Since).Seconds()
	if elapsed <= 0 {
		return 0
	}
	return float64(b.Rows-b.SinceRows) / elapsed
}

// Remaining estimates how long the rest of the backfill takes at the
// current rate; ok is false without an estimate, a rate, or rows left
// according to the estimate.
func (b BackfillProgress) Remaining(now time.Time) (d time.Duration, ok bool) {
	rate := b.Rate(now)
	if b.EstimatedRows <= b.Rows || rate <= 0 {
		return 0, false
	}
	return time.Duration(float64(b.EstimatedRows-b.Rows) / rate * float64(time.Second)), true
}

// ProgressObserver is told the capture's progress every
// Options.ProgressInterval, from a goroutine of its own: a runtime's log
// (LogProgress), or a status line for a person at a terminal.
type ProgressObserver interface {
	ObserveProgress(now time.Time, p Progress)
}

// LogProgress observes progress by logging it at info level: one entry for
// the lag, and one per table backfilling.
func LogProgress(log logrus.FieldLogger) ProgressObserver { return progressLog{log} }

type progressLog struct{ log logrus.FieldLogger }

var _ ProgressObserver = progressLog{}

func (l progressLog) ObserveProgress(now time.Time, p Progress) {
	fields := logrus.Fields{
		"lag_bytes":        p.BytesBehind(),
		"lag_seconds":      p.Behind(now).Round(time.Millisecond).Seconds(),
		"source_end":       p.SourceEnd,
		"emitted_position": p.Emitted,
	}
	if !p.LastCommit.IsZero() {
		fields["last_commit"] = p.LastCommit.UTC().Format(time.RFC3339Nano)
	}
	l.log.WithFields(fields).Info("capture lag")
	for _, b := range p.Backfills {
		f := logrus.Fields{"table": b.Stream.String(), "rows": b.Rows, "rows_per_second": int64(b.Rate(now))}
		if b.EstimatedRows > 0 {
			f["estimated_rows"] = b.EstimatedRows
			f["percent"] = min(100, 100*b.Rows/b.EstimatedRows)
		}
		if eta, ok := b.Remaining(now); ok {
			f["eta_seconds"] = eta.Round(time.Second).Seconds()
		}
		l.log.WithFields(f).Info("backfill progress")
	}
}

// progressTracker holds the capture's Progress between the engine, which
// updates it at commits and chunks (never per change), and the goroutine
// that reports it.
type progressTracker struct {
	mu sync.Mutex
	p  Progress
}

func newProgressTracker(bindings []*binding, now time.Time) *progressTracker {
	t := &progressTracker{}
	for _, b := range bindings {
		if b.state.Mode == ModeBackfill {
			t.p.Backfills = append(t.p.Backfills, BackfillProgress{
				Stream: b.Stream, Rows: b.state.Backfilled, EstimatedRows: b.EstimatedRows,
				Since: now, SinceRows: b.state.Backfilled,
			})
		}
	}
	return t
}

// commit records an emitted commit's lag facts.
func (t *progressTracker) commit(e *Commit) {
	t.mu.Lock()
	t.p.Emitted = max(t.p.Emitted, e.Position)
	t.p.SourceEnd = max(t.p.SourceEnd, e.SourceEnd, e.Position)
	if !e.CommitTime.IsZero() {
		t.p.LastCommit = e.CommitTime
	}
	t.mu.Unlock()
}

// keepalive records an idle position the capture moved to: the source's
// end, as far as the source knows.
func (t *progressTracker) keepalive(e *Keepalive) {
	t.mu.Lock()
	t.p.Emitted = max(t.p.Emitted, e.Position)
	t.p.SourceEnd = max(t.p.SourceEnd, e.Position)
	t.mu.Unlock()
}

// backfilled records a table's rows after a chunk; a finished table leaves
// the list.
func (t *progressTracker) backfilled(stream StreamID, rows int64, done bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.p.Backfills {
		if t.p.Backfills[i].Stream == stream {
			if done {
				t.p.Backfills = append(t.p.Backfills[:i:i], t.p.Backfills[i+1:]...)
			} else {
				t.p.Backfills[i].Rows = rows
			}
			return
		}
	}
}

func (t *progressTracker) snapshot() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.p
	p.Backfills = append([]BackfillProgress(nil), t.p.Backfills...)
	return p
}

// report tells observer the progress every interval until ctx ends.
func (t *progressTracker) report(ctx context.Context, interval time.Duration, observer ProgressObserver) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			observer.ObserveProgress(now, t.snapshot())
		}
	}
}
