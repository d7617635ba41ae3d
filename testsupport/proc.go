package testsupport

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PID returns the connector's process id.
func (s *Session) PID() int { return s.cmd.Process.Pid }

// PeakRSS returns the connector's peak resident set size in bytes (Linux's
// VmHWM). Call it while the connector runs: once it has exited, the kernel
// no longer reports its memory.
func (s *Session) PeakRSS() (int64, error) {
	return peakRSS(s.PID())
}

func peakRSS(pid int) (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading the peak RSS of process %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// The line reads "VmHWM:	  123456 kB".
		value, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: unexpected VmHWM line %q", path, sc.Text())
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return 0, fmt.Errorf("%s has no VmHWM line: process %d has exited", path, pid)
}
