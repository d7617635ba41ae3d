package main

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

// TestBigTransaction captures one transaction inserting 2,000,000 rows of
// about 100 bytes each, and measures the connector's peak resident memory:
// the engine streams a transaction through and must never hold it whole,
// nor, from PostgreSQL 14 on, where the server streams it while in
// progress, does the connector while it waits for the commit (the target
// is below 64 MB). It takes a minute or two, so it runs only with
// PGCAPTURE_BIG_TXN=1.
func TestBigTransaction(t *testing.T) {
	if os.Getenv("PGCAPTURE_BIG_TXN") != "1" {
		t.Skip("set PGCAPTURE_BIG_TXN=1 to capture a 2,000,000-row transaction")
	}
	const (
		rows      = 2_000_000
		maxPeakMB = 64
	)
	f := newFixture(t)
	f.connector.Env = []string{"LOG_LEVEL=info"}
	f.exec(t, `CREATE TABLE public.big (id bigint PRIMARY KEY, payload text NOT NULL)`)
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "big", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the empty table backfilled", func(s *testsupport.Session) bool {
		return !backfilling(t, s.State(), bindings)
	})
	idle, err := s.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	f.exec(t, `INSERT INTO public.big SELECT g, rpad(md5(g::text), 90, 'x') FROM generate_series(1, $1) g`, rows)
	inserted := time.Since(start)
	s.WaitFor(t, 10*time.Minute, "every row of the transaction", func(s *testsupport.Session) bool {
		return len(s.Docs()) >= rows
	})
	captured := time.Since(start)
	peak, err := s.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	s.Kill()

	seen := make([]bool, rows+1)
	for i, c := range s.Docs() {
		var d struct {
			Meta struct {
				Op string `json:"op"`
			} `json:"_meta"`
			ID      int64  `json:"id"`
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(c.Doc, &d); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if d.Meta.Op != "c" || d.ID < 1 || d.ID > rows || seen[d.ID] || len(d.Payload) != 90 {
			t.Fatalf("document %d is not the first insert of a row of the transaction: %.300s", i, c.Doc)
		}
		seen[d.ID] = true
	}
	if n := len(s.Docs()); n != rows {
		t.Errorf("captured %d documents, want %d", n, rows)
	}
	t.Logf("%d rows inserted in %v, captured %v after the insert began; connector peak RSS %.1f MB (%.1f MB before the transaction)",
		rows, inserted.Round(time.Millisecond), captured.Round(time.Millisecond), float64(peak)/(1<<20), float64(idle)/(1<<20))
	if f.server(t).Has(pgversion.StreamingInProgress) {
		if n := f.streamedTxns(t); n != 1 {
			t.Errorf("the server streamed %d transactions while in progress, want the one", n)
		}
	}
	if peak > maxPeakMB<<20 {
		t.Errorf("the connector's peak RSS was %.1f MB, above the %d MB target", float64(peak)/(1<<20), maxPeakMB)
	}
}
