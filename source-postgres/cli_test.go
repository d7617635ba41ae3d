package main

import (
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgcapture/protocol"
	"pgcapture/source-postgres/localcapture"
	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// captureProcess is a running `source-postgres capture`.
type captureProcess struct {
	cmd            *exec.Cmd
	stdout, stderr testsupport.SyncBuffer
	done           chan struct{}
	err            error // set before done is closed
}

func startCapture(t *testing.T, bin *connectorBin, args ...string) *captureProcess {
	t.Helper()
	p := &captureProcess{cmd: exec.Command(bin.path, append([]string{"capture"}, args...)...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), bin.env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// docs returns the complete lines written to stdout so far.
func (p *captureProcess) docs() []json.RawMessage {
	out := p.stdout.String()
	var docs []json.RawMessage
	for line := range strings.Lines(out[:strings.LastIndexByte(out, '\n')+1]) {
		docs = append(docs, json.RawMessage(strings.TrimSuffix(line, "\n")))
	}
	return docs
}

func (p *captureProcess) waitDocs(t *testing.T, n int) {
	t.Helper()
	waitUntil(t, 30*time.Second, "documents on stdout", func() bool {
		select {
		case <-p.done:
			t.Fatalf("capture exited (%v) after %d documents, want %d\nstderr:\n%s", p.err, len(p.docs()), n, p.stderr.String())
		default:
		}
		return len(p.docs()) >= n
	})
}

// stop interrupts the capture, as Ctrl-C does, and waits for it to exit.
func (p *captureProcess) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("capture did not exit within 15s of SIGINT\nstderr:\n%s", p.stderr.String())
	}
	if p.err != nil {
		t.Errorf("capture exited with %v after SIGINT\nstderr:\n%s", p.err, p.stderr.String())
	}
}

// stateFile is a state file as read at one moment.
type stateFile struct {
	state sqlcapture.State
	inode uint64
}

// readStateFile reads the state file, failing the test if it does not hold
// a whole state. A missing file reads as an empty state.
func readStateFile(t *testing.T, path string) stateFile {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return stateFile{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := localcapture.ParseStateFile(raw)
	if err != nil {
		t.Fatalf("the state file holds %q: %v", raw, err)
	}
	return stateFile{state: st, inode: info.Sys().(*syscall.Stat_t).Ino}
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCaptureCommand captures as a person does: documents on stdout, the
// state in a file that a second run resumes from.
func TestCaptureCommand(t *testing.T) {
	f := newFixture(t)
	f.advanced["backfill_chunk_size"] = 3
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, 10) g")
	// Tables before and after public.t, which --tables leaves out.
	f.exec(t, "CREATE TABLE public.a (id int PRIMARY KEY)")
	f.exec(t, "CREATE TABLE public.z (id int PRIMARY KEY)")
	f.exec(t, "INSERT INTO public.a VALUES (1); INSERT INTO public.z VALUES (1)")
	dir := t.TempDir()
	configPath, statePath := filepath.Join(dir, "config.json"), filepath.Join(dir, "state.json")
	writeJSONFile(t, configPath, f.config())
	bin := newConnectorBin(t)
	args := []string{"--config", configPath, "--state", statePath, "--tables", "public.t"}
	stateKey := protocol.StateKey([]string{"public", "t"}, 0)

	p := startCapture(t, bin, args...)
	// Every read of the state file while it is being rewritten finds a
	// whole state.
	waitUntil(t, 30*time.Second, "the backfill to be checkpointed", func() bool {
		s := readStateFile(t, statePath).state.Streams[stateKey]
		return s != nil && s.Mode == sqlcapture.ModeActive
	})
	p.waitDocs(t, 10)
	// A new file replaces the old one at each checkpoint, rather than the
	// old one being rewritten in place, where a crash could leave half a
	// state. Holding the current file open keeps its inode from being
	// reused by the next.
	held, err := os.Open(statePath)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldInfo, err := held.Stat()
	if err != nil {
		t.Fatal(err)
	}
	heldRaw, err := io.ReadAll(held)
	if err != nil {
		t.Fatal(err)
	}
	heldState, _, err := localcapture.ParseStateFile(heldRaw)
	if err != nil {
		t.Fatal(err)
	}
	f.exec(t, "INSERT INTO public.t VALUES (11, 'eleven')")
	p.waitDocs(t, 11)
	var streamed stateFile
	waitUntil(t, 30*time.Second, "the insert to be checkpointed", func() bool {
		streamed = readStateFile(t, statePath)
		return streamed.state.Cursor != heldState.Cursor
	})
	if heldInfo.Sys().(*syscall.Stat_t).Ino == streamed.inode {
		t.Errorf("the state file was rewritten in place (inode %d), not replaced", streamed.inode)
	}
	p.stop(t)
	first := p.docs()
	for i, raw := range first {
		d := parseDoc(t, raw)
		if d.Meta.Source.Table != "t" || d.Meta.Source.Snapshot != (i < 10) {
			t.Errorf("document %d is not what --tables public.t and the backfill make: %s", i, raw)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("the directory holds %d files, want the configuration and the state: %v", len(entries), entries)
	}

	// Changes made while the capture is stopped arrive at the next run,
	// without backfilling again.
	f.exec(t, "INSERT INTO public.t VALUES (12, 'twelve')")
	f.exec(t, "UPDATE public.t SET v = 'uno' WHERE id = 1")
	f.exec(t, "DELETE FROM public.t WHERE id = 2")
	p = startCapture(t, bin, args...)
	p.waitDocs(t, 3)
	f.exec(t, "INSERT INTO public.t VALUES (13, 'thirteen')")
	p.waitDocs(t, 4)
	p.stop(t)
	second := p.docs()
	var ops []string
	for _, raw := range second {
		d := parseDoc(t, raw)
		if d.Meta.Source.Snapshot {
			t.Errorf("the second run backfilled again: %s", raw)
		}
		ops = append(ops, d.Meta.Op)
	}
	if !slices.Equal(ops, []string{"c", "u", "d", "c"}) {
		t.Errorf("the second run emitted operations %v, want c, u, d, c", ops)
	}
	if !strings.Contains(p.stderr.String(), "resuming from the state file") {
		t.Errorf("the second run did not say it resumed:\n%s", p.stderr.String())
	}
	reduceAgainstTable(t, f, append(first, second...), []string{"/id"},
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM public.t`)
}

// TestCaptureCommandThroughTunnel captures every table through an SSH
// tunnel, logging everything, and never logs the key.
func TestCaptureCommandThroughTunnel(t *testing.T) {
	f := newFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t VALUES (1, 'one'), (2, 'two')")
	f.exec(t, "CREATE TABLE public.u (id int PRIMARY KEY)")
	f.exec(t, "INSERT INTO public.u VALUES (1)")
	key, authorized := testsupport.GenerateKey(t, "ed25519-openssh")
	sshd := testsupport.StartSSHD(t, authorized)
	dir := t.TempDir()
	configPath, statePath := filepath.Join(dir, "config.json"), filepath.Join(dir, "state.json")
	writeJSONFile(t, configPath, tunnelConfig(f, sshd, key, sshd.HostKey()))

	p := startCapture(t, newConnectorBin(t, "LOG_LEVEL=trace", "LOG_FORMAT=json"), "--config", configPath, "--state", statePath)
	// Without --tables, every table is captured.
	p.waitDocs(t, 3)
	f.exec(t, "INSERT INTO public.t VALUES (3, 'three')")
	p.waitDocs(t, 4)
	p.stop(t)
	stderr := p.stderr.String()
	for _, part := range secretParts(key) {
		if strings.Contains(stderr, part) || strings.Contains(p.stdout.String(), part) {
			t.Errorf("the output contains the private key's %q", part)
		}
	}
	if !strings.Contains(stderr, `"privateKey":"REDACTED"`) || !strings.Contains(stderr, "ssh tunnel: connected to the SSH server") {
		t.Errorf("the trace log does not show the redacted configuration and the tunnel:\n%s", stderr)
	}
	if _, err := os.Stat(statePath); err != nil {
		t.Errorf("no state file: %v", err)
	}
}

// TestCaptureCommandStateKeys captures tables whose names the runtime's
// state key encoding keeps (letters of any script, Other_Alphabetic marks)
// or percent-encodes, and finds the state file keyed exactly as a runtime
// keys those bindings: a state file can be handed to a runtime, and the
// tests' requests (testsupport.OpenRequest) use the same keys.
func TestCaptureCommandStateKeys(t *testing.T) {
	f := newFixture(t)
	tables := []struct {
		schema, name string
		key          string // as the runtime encodes it
	}{
		{"mağaza", "Ürün", "mağaza%2FÜrün"},
		{"public", "таблица", "public%2Fтаблица"},
		// U+093F and U+0940 are vowel signs and U+0902 a nasal mark: not
		// letters, but Other_Alphabetic, which the runtime keeps.
		{"public", "हिंदी", "public%2Fहिंदी"},
		{"public", "a b/c%", "public%2Fa%20b%2Fc%25"},
	}
	f.exec(t, `CREATE SCHEMA "mağaza"`)
	for _, tbl := range tables {
		name := pgx.Identifier{tbl.schema, tbl.name}.Sanitize()
		f.exec(t, "CREATE TABLE "+name+" (id int PRIMARY KEY)")
		f.exec(t, "INSERT INTO "+name+" VALUES (1)")
		if got := protocol.StateKey([]string{tbl.schema, tbl.name}, 0); got != tbl.key {
			t.Fatalf("protocol.StateKey(%q, %q) = %q, want %q", tbl.schema, tbl.name, got, tbl.key)
		}
	}
	dir := t.TempDir()
	configPath, statePath := filepath.Join(dir, "config.json"), filepath.Join(dir, "state.json")
	writeJSONFile(t, configPath, f.config())

	p := startCapture(t, newConnectorBin(t), "--config", configPath, "--state", statePath)
	var streams map[string]*sqlcapture.StreamState
	waitUntil(t, 30*time.Second, "every table's backfill to be checkpointed", func() bool {
		streams = readStateFile(t, statePath).state.Streams
		active := 0
		for _, s := range streams {
			if s.Mode == sqlcapture.ModeActive {
				active++
			}
		}
		return active == len(tables)
	})
	p.stop(t)
	var want []string
	for _, tbl := range tables {
		want = append(want, tbl.key)
	}
	if got := slices.Sorted(maps.Keys(streams)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("the state file has keys %q, want %q", got, want)
	}
}
