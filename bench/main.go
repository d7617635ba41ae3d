// Command bench measures the connector against the physical limits of the
// PostgreSQL server it reads from. In one run on a throwaway cluster it
//
//   - loads -rows rows into a table of about 100 bytes per row;
//   - backfills them with the connector (each codec of -codecs), and reads
//     them beside it with COPY (SELECT ... ORDER BY id) TO STDOUT, the limit,
//     and with a pgx keyset loop, for reference;
//   - inserts -rows more rows in transactions of -txn-rows and times the
//     connector catching up on them from its checkpoint, beside
//     pg_recvlogical draining the same WAL from a slot of its own, the limit;
//   - optionally streams one transaction of -big-txn rows the same way,
//     and again live: timed from its BEGIN with the consumer waiting
//     (live.go);
//   - times -latency single-row commits from the INSERT to the checkpoint
//     that carries the row on the connector's stdout;
//
// and prints rows/s, the ratio to each limit, CPU per row and the
// connector's resident memory. -out keeps the table, the raw figures as
// JSON and every log; -cpuprofile keeps a CPU profile of each connector run.
//
//	go run ./bench [-rows 1000000] [-out DIR] [-cpuprofile DIR]
package main

// This file is over 500 lines because it is the benchmark's whole script,
// phase after phase, read top to bottom.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pgcapture/source-postgres/config"
	"pgcapture/testsupport"
)

type options struct {
	rows, txnRows, bigTxn int64
	chunkSize             int
	backfillConns         []int
	backfillOnly, cli     bool
	codecs                []string
	formats               []string // replication formats of the streaming phases
	latency, repeat       int
	out, cpuprofile       string
	cliStateInterval      string
	env                   []string // added to the connector's environment
	timeout               time.Duration
}

func main() {
	var opts options
	flag.Int64Var(&opts.rows, "rows", 1_000_000, "rows to backfill, and again to insert while streaming")
	flag.Int64Var(&opts.txnRows, "txn-rows", 10_000, "rows per transaction of the streaming phase")
	flag.Int64Var(&opts.bigTxn, "big-txn", 0, "also stream one transaction of this many rows (0: skip)")
	flag.IntVar(&opts.chunkSize, "chunk", 0, "the connector's advanced.backfill_chunk_size, also the keyset loop's (0: the connector's default)")
	conns := flag.String("backfill-connections", "1,2", "the backfill phase runs the connector once with each of these advanced.backfill_connections, comma-separated")
	flag.BoolVar(&opts.backfillOnly, "backfill-only", false, "measure the backfill phase only (with -latency 0 and no -big-txn)")
	codecs := flag.String("codecs", "proto,json", "the connector codecs to measure, comma-separated")
	formats := flag.String("formats", "binary,text", "the connector's advanced.replication_format values to stream with, comma-separated: binary (auto) and text")
	flag.BoolVar(&opts.cli, "cli", true, "also measure the shell mode, source-postgres capture, writing its documents to a file")
	flag.StringVar(&opts.cliStateInterval, "cli-state-interval", "", "the shell mode's --state-interval (default: its own)")
	flag.IntVar(&opts.repeat, "repeat", 1, "measure every consumer this many times, taking turns, and report the median")
	flag.IntVar(&opts.latency, "latency", 200, "single-row commits whose delivery latency is measured (0: skip)")
	flag.StringVar(&opts.out, "out", "", "directory to write results.txt, results.json and the logs to")
	flag.StringVar(&opts.cpuprofile, "cpuprofile", "", "directory to write a CPU profile of each connector run to")
	flag.Func("env", "add `KEY=VALUE` to the connector's environment, e.g. GOMAXPROCS=1 (repeatable)", func(kv string) error {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("%q is not KEY=VALUE", kv)
		}
		opts.env = append(opts.env, kv)
		return nil
	})
	flag.DurationVar(&opts.timeout, "timeout", 10*time.Minute, "how long any one measurement may take")
	flag.Parse()
	opts.codecs = strings.Split(*codecs, ",")
	opts.formats = strings.Split(*formats, ",")
	for _, c := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -backfill-connections must list positive integers, got %q\n", *conns)
			os.Exit(2)
		}
		opts.backfillConns = append(opts.backfillConns, n)
	}
	if err := opts.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		flag.Usage()
		os.Exit(2)
	}

	if err := measureAndReport(opts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// measureAndReport runs the measurements, which an interrupt or SIGTERM
// ends, and prints the report.
func measureAndReport(opts options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, opts, os.Stderr)
	if err != nil {
		return err
	}
	return report(res, opts.out, os.Stdout)
}

func (o *options) validate() error {
	var problems []string
	if o.rows < 1 {
		problems = append(problems, "-rows must be at least 1")
	}
	if o.txnRows < 1 {
		problems = append(problems, "-txn-rows must be at least 1")
	}
	if o.repeat < 1 {
		problems = append(problems, "-repeat must be at least 1")
	}
	if o.bigTxn < 0 || o.chunkSize < 0 || o.latency < 0 {
		problems = append(problems, "-big-txn, -chunk and -latency must not be negative")
	}
	for i, c := range o.codecs {
		if c != "proto" && c != "json" {
			problems = append(problems, fmt.Sprintf("-codecs: %q is neither proto nor json", c))
		} else if slices.Contains(o.codecs[:i], c) {
			problems = append(problems, fmt.Sprintf("-codecs: %q is listed twice", c))
		}
	}
	for i, f := range o.formats {
		if f != "binary" && f != "text" {
			problems = append(problems, fmt.Sprintf("-formats: %q is neither binary nor text", f))
		} else if slices.Contains(o.formats[:i], f) {
			problems = append(problems, fmt.Sprintf("-formats: %q is listed twice", f))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	for _, dir := range []string{o.out, o.cpuprofile} {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// results are the raw figures of a run, written as results.json.
type results struct {
	Rows            int64             `json:"rows"`
	TxnRows         int64             `json:"txnRows"`
	BigTxn          int64             `json:"bigTxn,omitempty"`
	ChunkSize       int               `json:"chunkSize,omitempty"`
	RowBytes        float64           `json:"rowBytes"`   // a row in COPY's text format
	TableBytes      int64             `json:"tableBytes"` // on disk
	CPUs            int               `json:"cpus"`
	GoVersion       string            `json:"goVersion"`
	PostgresVersion string            `json:"postgresVersion"`
	Settings        map[string]string `json:"settings"`
	// LoadAverage is /proc/loadavg at the start and at the end: the
	// figures of a machine that was busy with other work are unreliable.
	LoadAverage  [2]string      `json:"loadAverage"`
	Repeat       int            `json:"repeat"`
	LoadSeconds  float64        `json:"loadSeconds"`
	Inserts      []insertTiming `json:"inserts"`
	Measurements []measurement  `json:"measurements"`
	Latency      *latency       `json:"latency,omitempty"`
}

type insertTiming struct {
	Phase   string  `json:"phase"`
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
}

// measurement is one consumer reading one phase's rows.
type measurement struct {
	Phase    string `json:"phase"`
	Consumer string `json:"consumer"`
	// Limit marks the phase's physical limit, which the connector's runs
	// are compared with.
	Limit          bool    `json:"limit,omitempty"`
	Rows           int64   `json:"rows"`
	Seconds        float64 `json:"seconds"`
	RowsPerSecond  float64 `json:"rowsPerSecond"`
	RatioToLimit   float64 `json:"ratioToLimit,omitempty"`
	Target         float64 `json:"target,omitempty"`
	StartupSeconds float64 `json:"startupSeconds,omitempty"` // process start to opened
	CPUSeconds     float64 `json:"cpuSeconds"`
	// WalsenderSeconds is the CPU time of the server process that streamed
	// to the consumer (streaming phases).
	WalsenderSeconds float64 `json:"walsenderCpuSeconds,omitempty"`
	// ServerCPUSeconds is the CPU time of the server's processes (every
	// backend, exited ones included) during the run; backfill phase only.
	ServerCPUSeconds float64 `json:"serverCpuSeconds,omitempty"`
	PeakRSS          int64   `json:"peakRssBytes,omitempty"`
	SteadyRSS        int64   `json:"steadyRssBytes,omitempty"` // the median sample
	Profile          string  `json:"profile,omitempty"`
	// Runs are the rates of every repetition in order; the measurement is
	// the run with the median rate.
	Runs []float64 `json:"runsRowsPerSecond,omitempty"`
}

type latency struct {
	Commits int     `json:"commits"`
	P50Ms   float64 `json:"p50Ms"`
	P99Ms   float64 `json:"p99Ms"`
	MaxMs   float64 `json:"maxMs"`
}

// Targets of issues 6 and 11, as fractions of the phase's limit: streaming
// in binary is to beat pg_recvlogical's text stream.
const (
	backfillTarget = 0.6
	// parallelBackfillTarget is issue 11's: a backfill over several
	// connections faster than one COPY of the table.
	parallelBackfillTarget = 1.0
	streamingTarget        = 0.75
	binaryStreamingTarget  = 1.3
)

// bench is one run's shared state.
type bench struct {
	opts   options
	srv    *server
	bin    string
	logDir string
	log    io.Writer
	res    *results
	// states holds each codec's checkpointed connector state: one capture
	// per codec, each with a slot of its own.
	states map[string]json.RawMessage
	nextID int64
	runs   []measurement // every run, in order
	// conns is the advanced.backfill_connections of the next connector run
	// (0: the connector's default).
	conns int
	// work holds the shell-mode capture's files; cliState is its state
	// file as the last backfill left it, which streaming runs start from.
	work, cliState string
}

func run(ctx context.Context, opts options, log io.Writer) (*results, error) {
	root, err := testsupport.ModuleRoot()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "pgcapture-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	logDir := cmp.Or(opts.out, work)

	fmt.Fprintln(log, "bench: building the connector")
	bin, err := buildConnector(root, work)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(log, "bench: starting PostgreSQL")
	srv, err := startServer(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.close()

	b := &bench{
		opts: opts, srv: srv, bin: bin, logDir: logDir, log: log,
		res: &results{
			Rows: opts.rows, TxnRows: opts.txnRows, BigTxn: opts.bigTxn, ChunkSize: opts.chunkSize,
			CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), PostgresVersion: srv.version(ctx),
			Settings: clusterSettings(), Repeat: opts.repeat, LoadAverage: [2]string{loadAverage()},
		},
		states: make(map[string]json.RawMessage),
		nextID: 1,
		work:   work,
	}
	fmt.Fprintf(log, "bench: loading %d rows\n", opts.rows)
	start := time.Now()
	if err := b.insert(ctx, opts.rows, 100_000); err != nil {
		return nil, err
	}
	if err := srv.settle(ctx); err != nil {
		return nil, err
	}
	b.res.LoadSeconds = time.Since(start).Seconds()
	b.res.TableBytes = srv.tableBytes(ctx)

	if err := b.backfill(ctx); err != nil {
		return nil, err
	}
	if !opts.backfillOnly {
		if err := b.streaming(ctx, fmt.Sprintf("streaming, %s-row txns", count(opts.txnRows)), opts.rows, opts.txnRows); err != nil {
			return nil, err
		}
	}
	if opts.bigTxn > 0 {
		if err := b.streaming(ctx, fmt.Sprintf("streaming, one %s-row txn", count(opts.bigTxn)), opts.bigTxn, opts.bigTxn); err != nil {
			return nil, err
		}
		if err := b.live(ctx, opts.bigTxn); err != nil {
			return nil, err
		}
	}
	// Last: its commits reach only the first codec's capture, and would be
	// extra rows for the others in a later streaming phase.
	if opts.latency > 0 {
		if err := b.measureLatency(ctx); err != nil {
			return nil, err
		}
	}
	b.res.LoadAverage[1] = loadAverage()
	b.res.finish(b.runs)
	return b.res, nil
}

// insert adds rows new rows in transactions of txnRows.
func (b *bench) insert(ctx context.Context, rows, txnRows int64) error {
	from := b.nextID
	b.nextID += rows
	return b.srv.insert(ctx, from, b.nextID-1, txnRows)
}

func (b *bench) backfill(ctx context.Context) error {
	const phase = "backfill"
	url := b.srv.captureURL()
	chunk := cmp.Or(b.opts.chunkSize, 4096) // the connector's default
	// An untimed first read, so that every consumer finds the table cached.
	if _, _, err := copyBaseline(ctx, url); err != nil {
		return err
	}
	defer func() { b.conns = 0 }()
	for rep := range b.opts.repeat {
		b.progress(phase, rep, "COPY")
		server := b.srv.cpu()
		m, rowBytes, err := copyBaseline(ctx, url)
		if err != nil {
			return err
		}
		m.ServerCPUSeconds = b.srv.cpu() - server
		b.res.RowBytes = rowBytes
		b.add(phase, true, m)

		b.progress(phase, rep, "pgx keyset loop")
		server = b.srv.cpu()
		if m, err = keysetBaseline(ctx, url, chunk); err != nil {
			return err
		}
		m.ServerCPUSeconds = b.srv.cpu() - server
		b.add(phase, false, m)

		for _, run := range b.backfillRuns() {
			codec := run.codec
			b.conns = run.conns
			b.progress(phase, rep, fmt.Sprintf("connector, %s codec, %d connections", codec, run.conns))
			server := b.srv.cpu()
			// A new capture every time: the connector replaces its slot.
			m, state, err := b.runConnector(phase, codec, "", nil, b.opts.rows, func(cp checkpoint, stateKey string) (bool, error) {
				if streamMode(cp.state, stateKey) != "Active" {
					return false, nil
				}
				if cp.docs != b.opts.rows {
					return false, fmt.Errorf("the backfill completed with %d documents, want %d", cp.docs, b.opts.rows)
				}
				return true, nil
			})
			if err != nil {
				return fmt.Errorf("backfill with the %s codec over %d connections: %w", codec, run.conns, err)
			}
			m.ServerCPUSeconds = b.srv.cpu() - server
			m.Consumer += fmt.Sprintf(", %d connection", run.conns)
			if run.conns > 1 {
				m.Consumer += "s"
			}
			b.states[codec] = state
			b.add(phase, false, m)
		}
		if b.opts.cli {
			if err := b.backfillCLI(phase, rep); err != nil {
				return err
			}
		}
	}
	return nil
}

// backfillCLI times a new shell-mode capture (--reset, default settings)
// backfilling the table into a file, and keeps its state for the streaming
// phases.
func (b *bench) backfillCLI(phase string, rep int) error {
	b.progress(phase, rep, cliConsumer)
	b.conns = 0
	state := filepath.Join(b.work, "cli-state.json")
	server := b.srv.cpu()
	m, err := b.runCLI(phase, state, true, b.opts.rows, func(raw json.RawMessage) bool {
		return streamMode(raw, cliStateKey()) == "Active"
	})
	if err != nil {
		return fmt.Errorf("backfill with the shell mode: %w", err)
	}
	m.ServerCPUSeconds = b.srv.cpu() - server
	b.add(phase, false, m)
	b.cliState = filepath.Join(b.work, "cli-state-backfilled.json")
	return copyFile(state, b.cliState)
}

// backfillRun is one connector configuration of the backfill phase.
type backfillRun struct {
	codec string
	conns int
}

// backfillRuns lists every codec with every connection count; the last run
// of each codec leaves the state the streaming phases resume from.
func (b *bench) backfillRuns() []backfillRun {
	var runs []backfillRun
	conns := b.opts.backfillConns
	if len(conns) == 0 {
		conns = []int{config.DefaultBackfillConnections}
	}
	for _, conns := range conns {
		for _, codec := range b.opts.codecs {
			runs = append(runs, backfillRun{codec: codec, conns: conns})
		}
	}
	return runs
}

// streaming inserts rows in transactions of txnRows while no consumer runs,
// then times each consumer catching up on them: pg_recvlogical from a slot
// created just before the inserts, and each codec's connector from its
// checkpoint. Every run reads from a copy of a slot saved before the inserts,
// so that all of them, repetitions included, decode exactly the same WAL; and
// the runs take turns, so that none competes with another for the CPUs.
func (b *bench) streaming(ctx context.Context, phase string, rows, txnRows int64) error {
	const recvSlot, recvBase = "bench_recvlogical", "bench_recvlogical_base"
	if err := b.srv.createSlot(ctx, recvBase); err != nil {
		return err
	}
	starts := make(map[string]json.RawMessage, len(b.opts.codecs))
	for _, codec := range b.opts.codecs {
		if err := b.srv.copySlot(ctx, connectorSlot(codec), connectorSlot(codec)+"_base"); err != nil {
			return err
		}
		starts[codec] = b.states[codec]
	}
	cliStart := filepath.Join(b.work, "cli-state-start.json")
	if b.cliState != "" {
		if err := b.srv.copySlot(ctx, cliSlot, cliSlot+"_base"); err != nil {
			return err
		}
		if err := copyFile(b.cliState, cliStart); err != nil {
			return err
		}
	}
	fmt.Fprintf(b.log, "bench: %s: inserting %d rows\n", phase, rows)
	start := time.Now()
	if err := b.insert(ctx, rows, txnRows); err != nil {
		return err
	}
	b.res.Inserts = append(b.res.Inserts, insertTiming{Phase: phase, Rows: rows, Seconds: time.Since(start).Seconds()})
	endpos, err := b.srv.flushLSN(ctx)
	if err != nil {
		return err
	}

	recvlogical := func(logName string, opts recvOptions) (measurement, error) {
		if err := b.srv.copySlot(ctx, recvBase, recvSlot); err != nil {
			return measurement{}, err
		}
		m, err := recvlogicalBaseline(ctx, b.srv, recvSlot, endpos, rows, filepath.Join(b.logDir, logName), opts)
		if err != nil {
			return measurement{}, err
		}
		return m, b.srv.dropSlot(ctx, recvSlot)
	}
	// An untimed first pass, so that no run is the first to read the WAL.
	if _, err := recvlogical(slug(phase)+"-warmup-pg_recvlogical.log", recvOptions{}); err != nil {
		return err
	}
	for rep := range b.opts.repeat {
		b.progress(phase, rep, "pg_recvlogical")
		m, err := recvlogical(slug(phase)+"-pg_recvlogical.log", recvOptions{})
		if err != nil {
			return err
		}
		b.add(phase, true, m)
		if rows == txnRows {
			// One transaction: how fast the server streams it at all.
			b.progress(phase, rep, "pg_recvlogical, streaming on")
			m, err := recvlogical(slug(phase)+"-pg_recvlogical-streaming.log", recvOptions{streaming: true})
			if err != nil {
				return err
			}
			b.add(phase, false, m)
		}
		if slices.Contains(b.opts.formats, "binary") {
			b.progress(phase, rep, "pg_recvlogical, binary")
			if m, err = recvlogical(slug(phase)+"-pg_recvlogical-binary.log", recvOptions{binary: true}); err != nil {
				return err
			}
			b.add(phase, false, m)
		}

		for _, codec := range b.opts.codecs {
			for _, format := range b.opts.formats {
				b.progress(phase, rep, "connector, "+codec+" codec, "+format)
				if err := b.srv.copySlot(ctx, connectorSlot(codec)+"_base", connectorSlot(codec)); err != nil {
					return err
				}
				m, state, err := b.runConnector(phase, codec, format, starts[codec], rows, func(cp checkpoint, _ string) (bool, error) {
					if cp.docs > rows {
						return false, fmt.Errorf("the connector emitted %d documents for %d inserted rows", cp.docs, rows)
					}
					return cp.docs == rows, nil
				})
				if err != nil {
					return fmt.Errorf("%s with the %s codec in %s: %w", phase, codec, format, err)
				}
				b.states[codec] = state
				b.add(phase, false, m)
			}
		}
		if b.cliState != "" {
			if err := b.streamCLI(ctx, phase, rep, cliStart, rows); err != nil {
				return err
			}
		}
	}
	if b.cliState != "" {
		if err := b.srv.dropSlot(ctx, cliSlot+"_base"); err != nil {
			return err
		}
	}
	bases := []string{recvBase}
	for _, codec := range b.opts.codecs {
		bases = append(bases, connectorSlot(codec)+"_base")
	}
	for _, slot := range bases {
		if err := b.srv.dropSlot(ctx, slot); err != nil {
			return err
		}
	}
	return nil
}

// streamCLI times the shell-mode capture catching up on the phase's rows
// from the state (start) and slot it had before the inserts, writing them
// to a file.
func (b *bench) streamCLI(ctx context.Context, phase string, rep int, start string, rows int64) error {
	b.progress(phase, rep, cliConsumer)
	if err := b.srv.copySlot(ctx, cliSlot+"_base", cliSlot); err != nil {
		return err
	}
	state := filepath.Join(b.work, "cli-state.json")
	if err := copyFile(start, state); err != nil {
		return err
	}
	before, err := os.ReadFile(state)
	if err != nil {
		return err
	}
	walsender := watchWalsender(b.srv, cliSlot)
	defer walsender.stop()
	m, err := b.runCLI(phase, state, false, rows, func(raw json.RawMessage) bool {
		return stateCursor(raw) != stateCursor(before)
	})
	if err != nil {
		return fmt.Errorf("%s with the shell mode: %w", phase, err)
	}
	m.WalsenderSeconds = walsender.stop()
	b.add(phase, false, m)
	// The next phase starts after these rows.
	return copyFile(state, b.cliState)
}

func (b *bench) progress(phase string, rep int, consumer string) {
	if b.opts.repeat > 1 {
		fmt.Fprintf(b.log, "bench: %s: %s (%d of %d)\n", phase, consumer, rep+1, b.opts.repeat)
	} else {
		fmt.Fprintf(b.log, "bench: %s: %s\n", phase, consumer)
	}
}

// connectorSlot is the replication slot of codec's capture.
func connectorSlot(codec string) string { return "bench_" + codec }

// runConnector runs one capture session of codec's capture from state until
// a checkpoint satisfies done, measures it from the process's start, and
// returns the state it ended with. format, when set, is its
// advanced.replication_format, and the run also measures the CPU of the
// server process streaming to it.
func (b *bench) runConnector(phase, codec, format string, state json.RawMessage, rows int64, done func(checkpoint, string) (bool, error)) (measurement, json.RawMessage, error) {
	s, req, err := b.startConnector(phase, codec, format, state)
	if err != nil {
		return measurement{}, nil, err
	}
	defer s.kill()
	var walsender *walsenderCPU
	if format != "" {
		walsender = watchWalsender(b.srv, connectorSlot(codec))
		defer walsender.stop()
	}
	cp, err := s.waitFor(b.opts.timeout, "after the last row", func(cp checkpoint) (bool, error) {
		return done(cp, req.stateKey())
	})
	if err != nil {
		return measurement{}, nil, fmt.Errorf("%w (log: %s)", err, b.logPath(phase, codec, format))
	}
	var walsenderSeconds float64
	if walsender != nil {
		walsenderSeconds = walsender.stop()
	}
	final, err := s.stop()
	if err != nil {
		return measurement{}, nil, fmt.Errorf("stopping the connector: %w (log: %s)", err, b.logPath(phase, codec, format))
	}
	consumer := "connector, " + codec + " codec"
	if format != "" {
		consumer += ", " + format
	}
	m := measurement{
		Consumer:         consumer,
		Rows:             rows,
		Seconds:          cp.at.Sub(s.started).Seconds(),
		WalsenderSeconds: walsenderSeconds,
		CPUSeconds:       s.cpuSeconds(),
		PeakRSS:          s.peakRSS(),
		SteadyRSS:        s.rss.median(),
		Profile:          s.profile,
	}
	if opened := s.openedAt(); !opened.IsZero() {
		m.StartupSeconds = opened.Sub(s.started).Seconds()
	}
	return m, final, nil
}

// startConnector starts a session of codec's capture from state, streaming
// in format (binary, text, or "": the connector's default) and backfilling
// over b.conns connections.
func (b *bench) startConnector(phase, codec, format string, state json.RawMessage) (*session, openRequest, error) {
	config, err := b.srv.connectorConfig(connectorSlot(codec), b.opts.chunkSize, format, b.conns)
	if err != nil {
		return nil, openRequest{}, err
	}
	req := openRequest{
		config:    config,
		namespace: "public",
		stream:    benchTable,
		key:       []string{"/id"},
		state:     state,
	}
	var profile string
	if b.opts.cpuprofile != "" {
		profile, err = filepath.Abs(filepath.Join(b.opts.cpuprofile, slug(phase)+"-"+codec+format+".pprof"))
		if err != nil {
			return nil, openRequest{}, err
		}
	}
	s, err := startSession(b.bin, codec, b.opts.env, req, b.logPath(phase, codec, format), profile)
	return s, req, err
}

func (b *bench) logPath(phase, codec, format string) string {
	if format != "" {
		codec += "-" + format
	}
	return filepath.Join(b.logDir, slug(phase)+"-"+codec+".log")
}

// measureLatency times single-row commits on an idle capture, from the
// start of the INSERT to the checkpoint that carries the row.
func (b *bench) measureLatency(ctx context.Context) error {
	const phase = "latency"
	codec := b.opts.codecs[0]
	fmt.Fprintf(b.log, "bench: latency: %d single-row commits, %s codec\n", b.opts.latency, codec)
	s, _, err := b.startConnector(phase, codec, "", b.states[codec])
	if err != nil {
		return err
	}
	defer s.kill()
	var samples []time.Duration
	// The first commit is not counted: it waits for the connector to start.
	for i := 0; i <= b.opts.latency; i++ {
		start := time.Now()
		if err := b.insert(ctx, 1, 1); err != nil {
			return err
		}
		want := int64(i + 1)
		cp, err := s.waitFor(b.opts.timeout, fmt.Sprintf("carrying single-row commit %d", i+1), func(cp checkpoint) (bool, error) {
			return cp.docs >= want, nil
		})
		if err != nil {
			return fmt.Errorf("latency: %w (log: %s)", err, b.logPath(phase, codec, ""))
		}
		if i > 0 {
			samples = append(samples, cp.at.Sub(start))
		}
	}
	state, err := s.stop()
	if err != nil {
		return fmt.Errorf("latency: stopping the connector: %w (log: %s)", err, b.logPath(phase, codec, ""))
	}
	b.states[codec] = state
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.res.Latency = &latency{
		Commits: len(samples),
		P50Ms:   ms(percentile(samples, 50)),
		P99Ms:   ms(percentile(samples, 99)),
		MaxMs:   ms(samples[len(samples)-1]),
	}
	return nil
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

func (b *bench) add(phase string, limit bool, m measurement) {
	m.Phase, m.Limit = phase, limit
	if m.Seconds > 0 {
		m.RowsPerSecond = float64(m.Rows) / m.Seconds
	}
	b.runs = append(b.runs, m)
}

// finish summarizes the runs of each consumer in each phase by the run with
// the median rate, and computes each connector's ratio to its limit.
func (r *results) finish(runs []measurement) {
	type group struct{ phase, consumer string }
	var order []group
	byGroup := map[group][]measurement{}
	for _, m := range runs {
		g := group{m.Phase, m.Consumer}
		if _, seen := byGroup[g]; !seen {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], m)
	}
	limits := map[string]float64{}
	for _, g := range order {
		ms := byGroup[g]
		var rates []float64
		for _, m := range ms {
			rates = append(rates, m.RowsPerSecond)
		}
		sorted := slices.Clone(ms)
		slices.SortFunc(sorted, func(a, b measurement) int { return cmp.Compare(a.RowsPerSecond, b.RowsPerSecond) })
		median := sorted[(len(sorted)-1)/2]
		if len(ms) > 1 {
			median.Runs = rates
		}
		if median.Limit {
			limits[median.Phase] = median.RowsPerSecond
		}
		r.Measurements = append(r.Measurements, median)
	}
	for i := range r.Measurements {
		m := &r.Measurements[i]
		if m.Limit || !strings.HasPrefix(m.Consumer, "connector") || limits[m.Phase] == 0 {
			continue
		}
		m.RatioToLimit = m.RowsPerSecond / limits[m.Phase]
		switch {
		case m.Phase == "backfill":
			m.Target = backfillTarget
			if strings.HasSuffix(m.Consumer, " connections") {
				m.Target = parallelBackfillTarget
			}
		case strings.Contains(m.Phase, "one "):
			m.Target = bigTxnTarget // live.go
		case strings.HasSuffix(m.Consumer, ", binary"):
			m.Target = binaryStreamingTarget
		default:
			m.Target = streamingTarget
		}
	}
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(data))
	return strings.Join(fields[:min(3, len(fields))], " ")
}

// streamMode returns the mode of a binding in a connector state.
func streamMode(state json.RawMessage, stateKey string) string {
	var st struct {
		Streams map[string]struct {
			Mode string `json:"mode"`
		} `json:"streams"`
	}
	if json.Unmarshal(state, &st) != nil {
		return ""
	}
	return st.Streams[stateKey].Mode
}

// stateCursor returns the cursor of a connector state.
func stateCursor(state json.RawMessage) string {
	var st struct {
		Cursor string `json:"cursor"`
	}
	if json.Unmarshal(state, &st) != nil {
		return ""
	}
	return st.Cursor
}

// cliStateKey is the benchmark table's key in the shell mode's state file.
func cliStateKey() string { return openRequest{namespace: "public", stream: benchTable}.stateKey() }

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o600)
}

// slug turns a phase name into a file name part.
func slug(phase string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-':
			return r
		}
		return '-'
	}, strings.NewReplacer(",", "", " ", "-").Replace(phase))
}
