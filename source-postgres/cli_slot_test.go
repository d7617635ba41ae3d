package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// The capture command started without a state never drops a slot that
// already exists: it may hold a stopped capture's unread changes. It says
// how to go on; --reset drops the slot and starts over. Under the runtime
// an empty state is a new capture, so the slot is dropped, with a warning.
func TestCaptureCommandKeepsExistingSlot(t *testing.T) {
	f := newFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t VALUES (1, 'one')")
	f.exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", f.slot)
	// The stopped capture's slot holds a change it has not read.
	f.exec(t, "SET synchronous_commit = on; INSERT INTO public.t VALUES (2, 'two')")
	before := f.confirmedFlush(t)
	dir := t.TempDir()
	configPath := filepath.Join(dir, "config.json")
	writeJSONFile(t, configPath, f.config())
	bin := newConnectorBin(t)

	for _, args := range [][]string{
		{"--config", configPath},
		{"--config", configPath, "--state", filepath.Join(dir, "not-yet.json")},
	} {
		r := bin.run(t, "", append([]string{"capture"}, args...)...)
		expectFailure(t, strings.Join(args, " "), r, f.slot, "already exists", "--state FILE", "--reset")
		if r.stdout != "" {
			t.Errorf("%v: the refused capture printed documents:\n%s", args, r.stdout)
		}
		if after := f.confirmedFlush(t); after != before {
			t.Fatalf("%v: the slot was dropped or moved: confirmed_flush_lsn %s, was %s", args, after, before)
		}
	}

	// --reset drops the slot and starts over, however the state file reads.
	statePath := filepath.Join(dir, "state.json")
	writeJSONFile(t, statePath, map[string]any{"cursor": before.String()})
	p := startCapture(t, bin, "--config", configPath, "--state", statePath, "--reset")
	p.waitDocs(t, 2)
	p.stop(t)
	for i, raw := range p.docs() {
		if !parseDoc(t, raw).Meta.Source.Snapshot {
			t.Errorf("document %d of the reset capture is not backfilled: %s", i, raw)
		}
	}
	if !strings.Contains(p.stderr.String(), "--reset: dropping the replication slot") {
		t.Errorf("the reset capture did not say it dropped the slot:\n%s", p.stderr.String())
	}
	if after := f.confirmedFlush(t); after <= before {
		t.Errorf("the slot was not created anew: confirmed_flush_lsn %s, was %s", after, before)
	}
	if st := readStateFile(t, statePath).state; st.Cursor == before.String() || len(st.Streams) != 1 {
		t.Errorf("the state file was not started over: %+v", st)
	}

	// Under the runtime an empty state drops the slot, saying so.
	f.waitSlotInactive(t)
	stale := f.confirmedFlush(t)
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), slotTestBindings(), nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool { return len(s.Docs()) >= 2 })
	if err := s.Stop(t); err != nil {
		t.Fatalf("the connector did not stop cleanly: %v", err)
	}
	var warning string
	for line := range strings.Lines(s.Stderr()) {
		if strings.Contains(line, "level=warning") && strings.Contains(line, "dropping the replication slot") {
			warning = line
		}
	}
	if warning == "" || !strings.Contains(warning, f.slot) || !strings.Contains(warning, stale.String()) || !strings.Contains(warning, "backfill counters") {
		t.Errorf("the runtime did not warn that it drops slot %s at %s, in its words:\n%s", f.slot, stale, s.Stderr())
	}
}

// A slot fault tells a shell user how to recover in the command's words,
// not the runtime's.
func TestCaptureCommandSlotRecoveryWords(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	configPath, statePath := filepath.Join(dir, "config.json"), filepath.Join(dir, "state.json")
	writeJSONFile(t, configPath, f.config())
	state := capturedOnce(t, f)
	if err := os.WriteFile(statePath, state, 0o600); err != nil {
		t.Fatal(err)
	}
	f.exec(t, `SELECT pg_drop_replication_slot($1)`, f.slot)
	r := newConnectorBin(t).run(t, "", "capture", "--config", configPath, "--state", statePath)
	expectFailure(t, "capture after the slot was dropped", r, f.slot, "no longer exists", "--reset")
	if msg := lastMessage(r.stderr); strings.Contains(msg, "backfill counter") {
		t.Errorf("a shell user is told of backfill counters: %s", msg)
	}
}
