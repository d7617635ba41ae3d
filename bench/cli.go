package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// The connector's shell mode, `source-postgres capture`, is measured as a
// person runs it: its documents go to a file (stdout redirected) and its
// state to a state file. It is timed from its process start until the file
// holds every document; the state file must then record the run (untimed),
// and the process is stopped with SIGINT, as Ctrl-C stops it.

// cliSlot is the replication slot of the shell-mode capture, which keeps
// a capture of its own as each codec does.
const cliSlot = "bench_cli"

// cliConsumer names the shell-mode capture in the report; the "connector"
// prefix gives it a ratio to the phase's limit.
const cliConsumer = "connector CLI, JSON lines to a file"

// cliRun is one run of `source-postgres capture`.
type cliRun struct {
	cmd     *exec.Cmd
	started time.Time
	out     *os.File // the document file, read back as it grows
	lines   int64
	done    chan struct{}
	waitErr error
	usage   *syscall.Rusage
	rss     rssSampler
}

// runCLI runs the shell-mode capture with the state file statePath (a new
// capture, which replaces its slot, when reset) until its output holds rows
// documents and its state file satisfies done, and measures it.
func (b *bench) runCLI(phase, statePath string, reset bool, rows int64, done func(state json.RawMessage) bool) (measurement, error) {
	work := filepath.Dir(statePath)
	cfg, err := b.srv.connectorConfig(cliSlot, b.opts.chunkSize, "", b.conns)
	if err != nil {
		return measurement{}, err
	}
	cfgPath := filepath.Join(work, "cli-config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return measurement{}, err
	}
	outPath := filepath.Join(work, "cli-documents.jsonl")
	logPath := filepath.Join(b.logDir, slug(phase)+"-cli.log")
	args := []string{"capture", "--config", cfgPath, "--state", statePath, "--tables", "public." + benchTable}
	if reset {
		args = append(args, "--reset")
	}
	if b.opts.cliStateInterval != "" {
		args = append(args, "--state-interval", b.opts.cliStateInterval)
	}
	r, err := startCLI(b.bin, b.opts.env, args, outPath, logPath)
	if err != nil {
		return measurement{}, err
	}
	defer r.kill()
	fail := func(err error) (measurement, error) {
		return measurement{}, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	at, err := r.waitLines(rows, b.opts.timeout)
	if err != nil {
		return fail(err)
	}
	if r.lines > rows {
		return fail(fmt.Errorf("the file holds %d documents for %d rows", r.lines, rows))
	}
	deadline := time.Now().Add(b.opts.timeout)
	for {
		raw, err := os.ReadFile(statePath)
		if err == nil && done(raw) {
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("the state file did not record the run within %v of its last document", b.opts.timeout))
		}
		select {
		case <-r.done:
			return fail(fmt.Errorf("the capture exited before its state file recorded the run (%v)", r.waitErr))
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := r.interrupt(); err != nil {
		return fail(err)
	}
	return measurement{
		Consumer:   cliConsumer,
		Rows:       rows,
		Seconds:    at.Sub(r.started).Seconds(),
		CPUSeconds: tvSeconds(r.usage.Utime) + tvSeconds(r.usage.Stime),
		PeakRSS:    max(r.rss.peak(), r.usage.Maxrss*1024),
		SteadyRSS:  r.rss.median(),
	}, nil
}

func startCLI(bin string, env, args []string, outPath, logPath string) (*cliRun, error) {
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child holds its own descriptor
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	read, err := os.Open(outPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r := &cliRun{cmd: cmd, out: read, done: make(chan struct{})}
	r.started = time.Now()
	if err := cmd.Start(); err != nil {
		read.Close() //nolint:errcheck // only read; the start's error is the one returned
		return nil, fmt.Errorf("starting the capture: %w", err)
	}
	r.rss.start(cmd.Process.Pid)
	go func() {
		r.waitErr = cmd.Wait()
		r.rss.stop()
		r.usage, _ = cmd.ProcessState.SysUsage().(*syscall.Rusage)
		close(r.done)
	}()
	return r, nil
}

// waitLines reads the document file as it grows until it holds rows
// lines, and returns when the last of them was seen.
func (r *cliRun) waitLines(rows int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1<<20)
	for {
		n, err := r.out.Read(buf)
		r.lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if r.lines >= rows {
			return time.Now(), nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return time.Time{}, err
		}
		if n > 0 {
			continue
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("the file holds %d of %d documents after %v", r.lines, rows, timeout)
		}
		select {
		case <-r.done:
			return time.Time{}, fmt.Errorf("the capture exited with %d of %d documents written (%v)", r.lines, rows, r.waitErr)
		case <-time.After(time.Millisecond):
		}
	}
}

// interrupt stops the capture as Ctrl-C does and waits for it to exit.
func (r *cliRun) interrupt() error {
	r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		return errors.New("the capture did not exit within 30s of SIGINT")
	}
	if r.waitErr != nil {
		return fmt.Errorf("the capture exited with %w after SIGINT", r.waitErr)
	}
	return nil
}

func (r *cliRun) kill() {
	r.cmd.Process.Kill()
	<-r.done
	r.out.Close() //nolint:errcheck // only read
}
