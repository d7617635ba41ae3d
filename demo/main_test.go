package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// TestDemo runs the README's main command briefly and checks that it shows
// both the backfill and live changes.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the connector and starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr testsupport.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, &stdout, &stderr, 50*time.Millisecond, false) }()

	deadline := time.Now().Add(50 * time.Second)
	for time.Now().Before(deadline) {
		var backfilled, replicated int
		for _, line := range strings.Split(stdout.String(), "\n") {
			if line == "" {
				continue
			}
			var doc struct {
				Meta struct {
					Source struct {
						Snapshot bool  `json:"snapshot"`
						TsMs     int64 `json:"ts_ms"`
					} `json:"source"`
				} `json:"_meta"`
			}
			if err := json.Unmarshal([]byte(line), &doc); err != nil {
				t.Fatalf("stdout line is not a JSON document: %q", line)
			}
			if doc.Meta.Source.Snapshot {
				backfilled++
			} else if doc.Meta.Source.TsMs > 0 {
				replicated++
			}
		}
		if backfilled >= 4 && replicated >= 3 {
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("demo: %v\n%s", err, stderr.String())
			}
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the demo stopped early: %v\n%s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("the demo did not show backfilled rows and live changes in time\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
}
