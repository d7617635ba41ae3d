package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"pgcapture/testsupport"
)

// --help, -h and help print plain usage on stdout and exit 0, for the
// binary and for each subcommand.
func TestCommandHelp(t *testing.T) {
	bin := newConnectorBin(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"capture", "--help"}, {"capture", "-h"}} {
		r := bin.run(t, "", args...)
		if r.err != nil {
			t.Errorf("%q: exit %v, want 0\nstderr:\n%s", args, r.err, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, "usage:") || !strings.Contains(r.stdout, "--state") || !strings.Contains(r.stdout, "--reset") {
			t.Errorf("%q: stdout is not the usage:\n%s", args, r.stdout)
		}
		if r.stderr != "" {
			t.Errorf("%q: stderr is not empty:\n%s", args, r.stderr)
		}
	}
	// A mistake points at the usage rather than quoting it into a log line.
	r := bin.run(t, "", "capture", "--stat", "state.json")
	expectFailure(t, "capture --stat", r, "flag provided but not defined: -stat", "capture --help")
	if strings.Contains(r.stderr, "usage:") {
		t.Errorf("a mistaken flag prints the usage into the log:\n%s", r.stderr)
	}
}

// --version prints the version set at build time, or else what the Go
// toolchain recorded.
func TestVersion(t *testing.T) {
	r := newConnectorBin(t).run(t, "", "--version")
	if r.err != nil || !strings.HasPrefix(r.stdout, "source-postgres ") || len(strings.Fields(r.stdout)) != 2 {
		t.Errorf("--version: exit %v, stdout %q, want \"source-postgres VERSION\"", r.err, r.stdout)
	}

	root, err := testsupport.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "source-postgres")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", path, "./source-postgres")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	r = (&connectorBin{path: path}).run(t, "", "--version")
	if r.err != nil || r.stdout != "source-postgres v9.8.7-test\n" {
		t.Errorf("--version of a binary built with -X main.version: exit %v, stdout %q", r.err, r.stdout)
	}
}

// A malformed configuration file is reported with the line and column of
// the problem.
func TestConfigFileErrorPosition(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"syntax", "{\n  \"address\": \"db\",\n  \"user\": \"flow\"\n  \"password\": \"secret\"\n}\n",
			[]string{"not valid JSON at line 4, column 3"}},
		{"type", "{\n  \"address\": \"db\",\n  \"advanced\": {\n    \"backfill_chunk_size\": \"abc\"\n  }\n}\n",
			[]string{`"advanced.backfill_chunk_size" must be an integer, got "abc" (line 4, column 28)`}},
	} {
		path := filepath.Join(dir, tc.name+".json")
		if err := os.WriteFile(path, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		r := newConnectorBin(t).run(t, "", "capture", "--config", path)
		expectFailure(t, tc.name, r, append([]string{path}, tc.want...)...)
	}
}

// A wrong password under the default sslmode (prefer), against a server
// without TLS, names the authentication failure only: the refused TLS
// attempt that came first is no part of the problem.
func TestWrongPasswordNamesAuthentication(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg["password"] = "not-the-password"
	cfg["advanced"] = map[string]any{"slotName": f.slot}
	path := filepath.Join(t.TempDir(), "config.json")
	writeJSONFile(t, path, cfg)
	bin := newConnectorBin(t)

	r := bin.run(t, "", "capture", "--config", path)
	want := `password authentication failed for user "postgres": check "user" and "password"`
	expectFailure(t, "wrong password", r, want)
	if msg := lastMessage(r.stderr); strings.Contains(strings.ToLower(msg), "tls") {
		t.Errorf("the error mentions TLS:\n%s", msg)
	}

	// At a terminal, the error is one sentence, not a log entry.
	stderr, err := runWithTerminalStderr(t, bin, "capture", "--config", path)
	if err == nil {
		t.Fatalf("exit 0 with a wrong password\nstderr:\n%s", stderr)
	}
	if last := lastLine(stderr); last != "source-postgres: "+want {
		t.Errorf("the last line at a terminal is %q, want %q", last, "source-postgres: "+want)
	}
}

// runWithTerminalStderr runs the binary with stderr on a pseudo-terminal
// and returns what it wrote there, and its exit error.
func runWithTerminalStderr(t *testing.T, bin *connectorBin, args ...string) (string, error) {
	t.Helper()
	master, slave := openPTY(t)
	defer master.Close()
	cmd := exec.Command(bin.path, args...)
	cmd.Env = append(os.Environ(), bin.env...)
	cmd.Stderr = slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		// Reading ends with EIO once the last holder of the slave is gone.
		io.Copy(&out, master) //nolint:errcheck // ends with EIO by design, see above
		close(read)
	}()
	if err := cmd.Start(); err != nil {
		slave.Close() //nolint:errcheck // the start failure is what the test reports
		t.Fatal(err)
	}
	slave.Close() //nolint:errcheck // the child holds its own copy; ours only has to go
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(binTimeout):
		cmd.Process.Kill()
		t.Fatalf("%q did not exit within %s", args, binTimeout)
	}
	<-read
	return strings.ReplaceAll(out.String(), "\r\n", "\n"), err
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		master.Close() //nolint:errcheck // the open failure is what the test reports
		t.Fatalf("unlocking the pseudo-terminal: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		master.Close() //nolint:errcheck // the open failure is what the test reports
		t.Fatalf("numbering the pseudo-terminal: %v", e)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close() //nolint:errcheck // the open failure is what the test reports
		t.Fatalf("opening the pseudo-terminal's slave: %v", err)
	}
	return master, slave
}
