package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
)

// The live phase (-big-txn N) times one transaction of N rows from its
// BEGIN, with the consumer already connected and idle, until the consumer
// has the whole transaction: the connector its last document's checkpoint,
// pg_recvlogical the transaction's Commit message in its output file. It
// is where streaming transactions in progress pays: the server sends the
// transaction as it is written, and the connector builds its documents
// meanwhile, where without streaming the server keeps it in its own spill
// files until the commit, then reads them back and only then sends it.
//
// The consumers take turns; each turn inserts a new transaction, the
// connector's into the captured table and pg_recvlogical's into a table of
// its own publication, so that neither's slot holds the other's rows (the
// connector's server-side decoding still passes over pg_recvlogical's rows,
// before its turn begins: its turn waits for a checkpoint past them).

// bigTxnTarget is the target for one large transaction: the
// connector at least 1.3 times as fast as pg_recvlogical.
const bigTxnTarget = 1.3

const recvTable = "public.bench_recv"

func (b *bench) live(ctx context.Context, rows int64) error {
	phase := fmt.Sprintf("live, one %s-row txn", count(rows))
	codec := b.opts.codecs[0]
	nextRecv := int64(1)
	for rep := range b.opts.repeat {
		b.progress(phase, rep, "pg_recvlogical")
		from := nextRecv
		nextRecv += rows
		m, err := b.recvlogicalLive(ctx, phase, func() error {
			return b.srv.insertInto(ctx, recvTable, from, from+rows-1, rows)
		})
		if err != nil {
			return err
		}
		m.Rows = rows
		b.add(phase, true, m)

		b.progress(phase, rep, "connector, "+codec+" codec")
		if m, err = b.connectorLive(ctx, phase, codec, rows); err != nil {
			return err
		}
		b.add(phase, false, m)
	}
	return nil
}

// connectorLive runs codec's capture until it is idle past the current
// WAL, then inserts rows in one transaction and times it until the
// checkpoint after its last document.
func (b *bench) connectorLive(ctx context.Context, phase, codec string, rows int64) (measurement, error) {
	idleAt, err := b.srv.flushLSN(ctx)
	if err != nil {
		return measurement{}, err
	}
	s, _, err := b.startConnector(phase, codec, "", b.states[codec])
	if err != nil {
		return measurement{}, err
	}
	defer s.kill()
	idle, err := s.waitFor(b.opts.timeout, "past the WAL before the transaction", func(cp checkpoint) (bool, error) {
		return cursorOf(cp.state) >= idleAt, nil
	})
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w (log: %s)", phase, err, b.logPath(phase, codec, ""))
	}
	start := time.Now()
	if err := b.insert(ctx, rows, rows); err != nil {
		return measurement{}, err
	}
	cp, err := s.waitFor(b.opts.timeout, "after the transaction's last row", func(cp checkpoint) (bool, error) {
		if n := cp.docs - idle.docs; n > rows {
			return false, fmt.Errorf("the connector emitted %d documents for a transaction of %d rows", n, rows)
		}
		return cp.docs-idle.docs == rows, nil
	})
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w (log: %s)", phase, err, b.logPath(phase, codec, ""))
	}
	final, err := s.stop()
	if err != nil {
		return measurement{}, fmt.Errorf("%s: stopping the connector: %w (log: %s)", phase, err, b.logPath(phase, codec, ""))
	}
	b.states[codec] = final
	return measurement{
		Consumer:   "connector, " + codec + " codec",
		Rows:       rows,
		Seconds:    cp.at.Sub(start).Seconds(),
		CPUSeconds: s.cpuSeconds(),
		PeakRSS:    s.peakRSS(),
		SteadyRSS:  s.rss.median(),
	}, nil
}

// recvlogicalLive starts pg_recvlogical, with the options the catch-up
// phases give it, on a new slot, runs insert once it is streaming, and
// times it until its output file ends with the transaction's Commit.
// (Its output goes to a file, not /dev/null, to be watched; fsync is off,
// as the connector's output is a pipe.)
func (b *bench) recvlogicalLive(ctx context.Context, phase string, insert func() error) (measurement, error) {
	const slot = "bench_recvlogical_live"
	if err := b.srv.createSlot(ctx, slot); err != nil {
		return measurement{}, err
	}
	// A slot left over by a failure is recreated by the next turn.
	defer b.srv.dropSlot(context.WithoutCancel(ctx), slot)
	before, err := b.srv.flushLSN(ctx)
	if err != nil {
		return measurement{}, err
	}
	out, err := os.CreateTemp(b.logDir, "live-pg_recvlogical-*.out")
	if err != nil {
		return measurement{}, err
	}
	if err := out.Close(); err != nil {
		return measurement{}, err
	}
	defer os.Remove(out.Name())
	logPath := filepath.Join(b.logDir, slug(phase)+"-pg_recvlogical.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return measurement{}, err
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, "pg_recvlogical", "--dbname", b.srv.recvlogicalConninfo(), "--slot", slot,
		"--start", "--no-loop", "--fsync-interval", "0",
		"--option", "proto_version=1", "--option", "publication_names=bench_recv_publication",
		"--file", out.Name())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return measurement{}, fmt.Errorf("starting pg_recvlogical (is the PostgreSQL client installed?): %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// stop ends pg_recvlogical, which may have exited already; its exit
	// status says nothing about the measurement.
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited: //nolint:errcheck // see above
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited //nolint:errcheck // see above
		}
	}
	var rss rssSampler
	rss.start(cmd.Process.Pid)
	if err := b.srv.waitSlotActive(ctx, slot, 30*time.Second); err != nil {
		stop()
		return measurement{}, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	start := time.Now()
	if err := insert(); err != nil {
		stop()
		return measurement{}, err
	}
	deadline := time.Now().Add(b.opts.timeout)
	var elapsed time.Duration
	for {
		done, err := endsWithCommit(out.Name(), before)
		if err != nil {
			stop()
			return measurement{}, err
		}
		if done {
			elapsed = time.Since(start)
			break
		}
		select {
		case err := <-exited:
			return measurement{}, fmt.Errorf("pg_recvlogical exited before the transaction's commit: %v (log: %s)", err, logPath)
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return measurement{}, fmt.Errorf("pg_recvlogical did not write the transaction's commit within %v (log: %s)", b.opts.timeout, logPath)
		}
	}
	rss.stop()
	stop()
	m := measurement{Consumer: "pg_recvlogical, pgoutput proto_version 1", Seconds: elapsed.Seconds(), PeakRSS: rss.peak()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	return m, nil
}

// endsWithCommit reports whether pg_recvlogical's output file ends with a
// pgoutput Commit (written, like every message, followed by a newline)
// ending past after: the transaction is all there.
func endsWithCommit(path string, after pglogrepl.LSN) (bool, error) {
	const commitLen = 1 + 1 + 8 + 8 + 8 // type, flags, commit LSN, end LSN, time
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < commitLen+1 {
		return false, err
	}
	var tail [commitLen + 1]byte
	if _, err := f.ReadAt(tail[:], st.Size()-int64(len(tail))); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if tail[0] != 'C' || tail[1] != 0 || tail[commitLen] != '\n' {
		return false, nil
	}
	commit, end := binary.BigEndian.Uint64(tail[2:]), binary.BigEndian.Uint64(tail[10:])
	return commit > uint64(after) && end > commit, nil
}

// cursorOf returns the stream cursor of a connector state, 0 without one.
func cursorOf(state json.RawMessage) pglogrepl.LSN {
	var st struct {
		Cursor string `json:"cursor"`
	}
	if json.Unmarshal(state, &st) != nil {
		return 0
	}
	lsn, err := pglogrepl.ParseLSN(st.Cursor)
	if err != nil {
		return 0
	}
	return lsn
}
