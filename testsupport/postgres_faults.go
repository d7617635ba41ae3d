package testsupport

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Faults of a cluster started by this package, for tests of how a client
// copes with a server that crashes or stops responding. Each skips the test
// when the server is external.

// StopImmediate stops the server as "pg_ctl stop -m immediate" does: every
// backend exits at once without a checkpoint, so the next start runs crash
// recovery. Start starts it again.
func (p *Postgres) StopImmediate(t testing.TB) {
	t.Helper()
	p.requireLocal(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server == nil {
		t.Fatal("StopImmediate: the server is not running")
	}
	if err := p.server.stop(syscall.SIGQUIT); err != nil {
		t.Fatalf("stopping PostgreSQL: %v", err)
	}
	p.server = nil
}

// Start starts a server stopped by StopImmediate on the same port and waits
// until it accepts connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	p.requireLocal(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server != nil {
		t.Fatal("Start: the server is already running")
	}
	if err := p.start(); err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
}

// Pause stops the postmaster and every server process (SIGSTOP), as a
// frozen virtual machine would: their connections stay open and the kernel
// keeps acknowledging packets, but nothing answers. Resume continues them.
func (p *Postgres) Pause(t testing.TB) { p.signalAll(t, syscall.SIGSTOP) }

// Resume continues the processes Pause stopped (SIGCONT).
func (p *Postgres) Resume(t testing.TB) { p.signalAll(t, syscall.SIGCONT) }

func (p *Postgres) signalAll(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p.requireLocal(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server == nil {
		t.Fatal("the server is not running")
	}
	pid := p.server.cmd.Process.Pid
	pids := append([]int{pid}, childProcesses(pid)...)
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
			t.Fatalf("sending %v to server process %d: %v", sig, pid, err)
		}
	}
}

func (p *Postgres) requireLocal(t testing.TB) {
	t.Helper()
	if p.baseDir == "" {
		t.Skipf("this test needs a cluster started by this package, but %s names an external server", ExternalPostgresEnv)
	}
}

// childProcesses lists the processes whose parent is pid, from /proc.
func childProcesses(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// The command name, in parentheses, may contain spaces: the fields
		// after it are "state ppid ...".
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		var child int
		if _, err := fmt.Sscan(filepath.Base(filepath.Dir(path)), &child); err == nil {
			out = append(out, child)
		}
	}
	return out
}
