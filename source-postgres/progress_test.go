package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"pgcapture/testsupport"
)

// progressEntry is a periodic progress log entry (LOG_FORMAT=json).
type progressEntry struct {
	Msg string `json:"msg"`
	// capture lag
	LagBytes   *uint64  `json:"lag_bytes"`
	LagSeconds *float64 `json:"lag_seconds"`
	SourceEnd  uint64   `json:"source_end"`
	Emitted    uint64   `json:"emitted_position"`
	LastCommit string   `json:"last_commit"`
	// backfill progress
	Table         string `json:"table"`
	Rows          int64  `json:"rows"`
	EstimatedRows int64  `json:"estimated_rows"`
}

func progressEntries(t *testing.T, stderr string, msg string) []progressEntry {
	t.Helper()
	var out []progressEntry
	for line := range strings.Lines(stderr) {
		var e progressEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == msg {
			out = append(out, e)
		}
	}
	return out
}

// Under the runtime, the capture logs how far behind the server it is, and
// each backfill's progress against the table's estimated size, every
// LOG_PROGRESS_INTERVAL.
func TestProgressLog(t *testing.T) {
	const rows = 100_000
	f := newFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t SELECT g, 'x' FROM generate_series(1, $1) g", rows)
	f.exec(t, "ANALYZE public.t")
	// 200 chunks, each waiting for its fence to come back through the
	// WAL, take far longer than the interval of the reports.
	f.advanced["backfill_chunk_size"] = rows / 200

	connector := &testsupport.Connector{Path: testsupport.BuildConnector(t), Env: []string{"LOG_FORMAT=json", "LOG_PROGRESS_INTERVAL=100ms"}}
	s := connector.Open(t, openRequest(f.config(), "public.t"), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 60*time.Second, "the backfill", func(s *testsupport.Session) bool { return len(s.Docs()) >= rows })
	var during int
	for _, e := range progressEntries(t, s.Stderr(), "backfill progress") {
		if e.Table != "public.t" || e.EstimatedRows != rows || e.Rows > rows {
			t.Errorf("a backfill progress entry is not of public.t's %d rows: %+v", rows, e)
		}
		if e.Rows > 0 && e.Rows < rows {
			during++
		}
	}
	t.Logf("%d backfill progress entries during the backfill", during)
	if during == 0 {
		t.Errorf("no backfill progress entry during the backfill:\n%s", s.Stderr())
	}

	// Once a later commit is emitted, the lag entries say the capture is
	// at or past it.
	f.exec(t, "INSERT INTO public.t VALUES (0, 'y')")
	committed := f.walLSN(t, "pg_current_wal_lsn()")
	s.WaitFor(t, 30*time.Second, "a lag entry at or past the insert", func(s *testsupport.Session) bool {
		for _, e := range progressEntries(t, s.Stderr(), "capture lag") {
			if pglogrepl.LSN(e.Emitted) >= committed && e.LastCommit != "" {
				return true
			}
		}
		return false
	})
	if err := s.Stop(t); err != nil {
		t.Fatalf("the connector did not stop cleanly: %v", err)
	}
	entries := progressEntries(t, s.Stderr(), "capture lag")
	for _, e := range entries {
		if e.LagBytes == nil || e.LagSeconds == nil {
			t.Fatalf("a lag entry lacks lag_bytes or lag_seconds: %+v", e)
		}
		if *e.LagBytes != e.SourceEnd-min(e.SourceEnd, e.Emitted) {
			t.Errorf("lag_bytes %d is not source_end %d - emitted_position %d", *e.LagBytes, e.SourceEnd, e.Emitted)
		}
	}
	// Reported every 100ms, not per event: the session lasted seconds
	// and emitted a hundred thousand documents.
	if n := len(entries); n < 2 || n > 600 {
		t.Errorf("%d lag entries", n)
	}
}
