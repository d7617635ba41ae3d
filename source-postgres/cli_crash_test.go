package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/source-postgres/localcapture"
	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// TestCaptureCommandKilledWritingToAFile runs the shell mode as a person
// scripts it, `capture --state state.json >> docs.jsonl`, and kills it with
// SIGKILL again and again while a workload of small transactions commits:
// so many checkpoints that they wait to be written to the state file
// together (--state-interval), and kills land while some wait. The file
// must then hold only whole JSON lines, and its documents, reduced by key,
// must equal the table: the documents of a killed run's unwritten
// checkpoints are cut off the file by the next run, which writes them
// again; none is skipped, and none is left that the next run would not
// write (a row backfilled, then deleted, would stay in the file for good).
func TestCaptureCommandKilledWritingToAFile(t *testing.T) {
	f := newFixture(t)
	f.exec(t, `CREATE TABLE public.t (id bigint PRIMARY KEY, v text, n bigint NOT NULL)`)
	f.exec(t, `INSERT INTO public.t SELECT g, 'seed ' || g, 0 FROM generate_series(0, 599) g WHERE g % 2 = 0`)
	// Small chunks, so that the first runs are killed in the backfill,
	// whose documents a resumed run does not write again as they were.
	f.advanced["backfill_chunk_size"] = 10
	dir := t.TempDir()
	configPath, statePath, docsPath := filepath.Join(dir, "config.json"), filepath.Join(dir, "state.json"), filepath.Join(dir, "docs.jsonl")
	writeJSONFile(t, configPath, f.config())
	bin := newConnectorBin(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	w := testsupport.StartWorkload(t, f.pg, f.db, []testsupport.WorkloadTable{{Name: "public.t", Key: "id", Keys: testsupport.IntKeys(600)}},
		testsupport.WorkloadOptions{Seed: seed, Pause: time.Millisecond})

	var stderr testsupport.SyncBuffer
	run := func() *exec.Cmd {
		out, err := os.OpenFile(docsPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd := exec.Command(bin.path, "capture", "--config", configPath, "--state", statePath, "--tables", "public.t")
		cmd.Env = append(os.Environ(), bin.env...)
		cmd.Stdout, cmd.Stderr = out, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	size := func() int64 {
		info, err := os.Stat(docsPath)
		if err != nil {
			return 0
		}
		return info.Size()
	}
	var stateWrites, kills int
	var lastMark int64
	for i := range 6 {
		before, state := size(), readStateFile(t, statePath)
		cmd := run()
		// Each run is killed once it has written documents of its own and
		// then for a while longer (the first ones soon, in the backfill),
		// most often before its state file has caught up with them.
		deadline := time.Now().Add(30 * time.Second)
		for size() <= before {
			if time.Now().After(deadline) {
				st, _ := os.ReadFile(statePath)
				t.Fatalf("run %d wrote no documents within 30s; the state file holds %s; stderr of the runs:\n%s", kills+1, st, stderr.String())
			}
			time.Sleep(time.Millisecond)
		}
		longest := 1500 * time.Millisecond
		if i < 3 {
			longest = 100 * time.Millisecond
		}
		time.Sleep(time.Duration(rng.Int64N(int64(longest))))
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait() //nolint:errcheck // killed
		kills++
		if readStateFile(t, statePath).state.Cursor != state.state.Cursor {
			stateWrites++
		}
		// The state file's mark never moves back: each run starts writing
		// where the last state reached, and its state covers that much.
		_, mark, err := localcapture.ReadStateFile(statePath)
		if err != nil {
			t.Fatal(err)
		}
		if mark == nil || mark.Offset < lastMark {
			t.Fatalf("after run %d the state file's mark is %+v, behind the last run's offset %d", i+1, mark, lastMark)
		}
		lastMark = mark.Offset
	}
	stats := w.Stop(t)

	// A last run goes past a marker committed after the workload stopped,
	// and is stopped as Ctrl-C stops it. The marker's key is the largest,
	// so that a backfill, too, reaches it last.
	f.exec(t, `INSERT INTO public.t VALUES (1000000, 'marker', 0)`)
	cmd := run()
	waitUntil(t, 60*time.Second, "the marker's document", func() bool {
		raw, _ := os.ReadFile(docsPath)
		return bytes.Contains(raw, []byte(`"v":"marker"`))
	})
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the last run exited with %v after SIGINT", err)
	}

	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	var docs []json.RawMessage
	for i, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		if !json.Valid(line) {
			t.Fatalf("line %d of the file is not a whole JSON document: %.200q", i+1, line)
		}
		docs = append(docs, json.RawMessage(line))
	}
	cuts := strings.Count(stderr.String(), "cut the documents' file back")
	t.Logf("%d kills, %d of them after the run's state file had caught up with a checkpoint; %d runs cut documents of unwritten checkpoints off; %d documents; workload: %d transactions committed, %d rolled back",
		kills, stateWrites, cuts, len(docs), stats.Committed, stats.RolledBack)
	if cuts == 0 {
		t.Error("no run found documents past its state file's mark: the kills never landed while checkpoints waited")
	}
	final := readStateFile(t, statePath).state.Streams
	if s := final[protocol.StateKey([]string{"public", "t"}, 0)]; len(final) != 1 || s == nil || s.Mode != sqlcapture.ModeActive {
		t.Errorf("the last state holds %v, want public.t streaming", final)
	}
	reduceAgainstTable(t, f, docs, []string{"/id"},
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v, 'n', n)::text FROM public.t`)
}
