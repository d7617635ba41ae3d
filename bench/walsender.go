package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// walsenderCPU follows the CPU time of the server process that streams a
// slot (its walsender, which decodes the WAL and formats the values), found
// by the slot's active_pid. The process ends with its connection, so its
// CPU time is sampled while it runs: the last sample, at most
// walsenderPoll old, or one taken by stop while the process still runs.
type walsenderCPU struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	pid     int
	seconds float64
}

const walsenderPoll = 5 * time.Millisecond

// watchWalsender starts following the walsender of slot, with a connection
// of its own.
func watchWalsender(srv *server, slot string) *walsenderCPU {
	ctx, cancel := context.WithCancel(context.Background())
	w := &walsenderCPU{cancel: cancel, done: make(chan struct{})}
	go w.watch(ctx, srv, slot)
	return w
}

func (w *walsenderCPU) watch(ctx context.Context, srv *server, slot string) {
	defer close(w.done)
	conn, err := srv.connectAsSuperuser(ctx, database)
	if err != nil {
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tick := time.NewTicker(walsenderPoll)
	defer tick.Stop()
	for {
		w.mu.Lock()
		pid := w.pid
		w.mu.Unlock()
		if pid == 0 {
			var active *int32
			if conn.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active) == nil && active != nil {
				w.mu.Lock()
				w.pid = int(*active)
				w.mu.Unlock()
			}
		} else {
			w.sample()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sample records the process's CPU time if it still runs.
func (w *walsenderCPU) sample() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pid == 0 {
		return
	}
	if s, err := processCPU(w.pid); err == nil {
		w.seconds = s
	}
}

// stop ends the watch, with a last sample, and returns the CPU seconds.
func (w *walsenderCPU) stop() float64 {
	w.once.Do(func() {
		w.sample()
		w.cancel()
		<-w.done
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seconds
}

// processCPU returns a process's CPU time: from /proc/PID/schedstat in
// nanoseconds where the kernel counts it (not every one does), else utime+stime of /proc/PID/stat
// in clock ticks (assumed 100 a second, as on every Linux build of note).
func processCPU(pid int) (float64, error) {
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid)); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil && ns > 0 {
				return float64(ns) / 1e9, nil
			}
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command, field 2, is in parentheses and may hold spaces.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unreadable CPU times", pid)
	}
	return float64(utime+stime) / 100, nil
}
