package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"pgcapture/testsupport"
)

// clusterSettings tune the throwaway server for a 2-core machine with a few
// GB of memory, and are the same for the connector and the baselines. WAL
// is not fsynced (the disk is not what is measured) but commits wait for
// the WAL flush, as by default, so that commit latency is not held up by
// the WAL writer's 200ms cadence.
func clusterSettings() map[string]string {
	return map[string]string{
		"shared_buffers":       "1GB",
		"wal_buffers":          "64MB",
		"max_wal_size":         "16GB",
		"checkpoint_timeout":   "1h",
		"work_mem":             "64MB",
		"maintenance_work_mem": "512MB",
		"synchronous_commit":   "on",
		// Neither background work nor plan compilation should land in the
		// middle of one consumer's measurement and not another's.
		"autovacuum": "off",
		"jit":        "off",
	}
}

const (
	database     = "bench"
	captureUser  = "flow_capture"
	capturePass  = "secret"
	publication  = "flow_publication"
	benchTable   = "bench"
	benchColumns = "id, n, s, ts, amount, doc"
)

// setupSQL is the database setup the README asks of an administrator, plus
// the benchmark's table: about 100 bytes per row in COPY's text output.
const setupSQL = `
CREATE USER flow_capture WITH PASSWORD 'secret' REPLICATION;
GRANT pg_read_all_data TO flow_capture;
CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
GRANT ALL PRIVILEGES ON TABLE public.flow_watermarks TO flow_capture;
CREATE TABLE public.bench (
	id     bigint PRIMARY KEY,
	n      integer NOT NULL,
	s      text NOT NULL,
	ts     timestamptz NOT NULL,
	amount numeric(12,2) NOT NULL,
	doc    jsonb
);
CREATE PUBLICATION flow_publication FOR TABLE public.flow_watermarks, public.bench
	WITH (publish_via_partition_root = true);
CREATE TABLE public.bench_recv (LIKE public.bench INCLUDING ALL);
CREATE PUBLICATION bench_recv_publication FOR TABLE public.bench_recv;
`

// insertSQL inserts the rows with ids $1 through $2 in one statement.
const insertSQL = `INSERT INTO public.bench (id, n, s, ts, amount, doc)
SELECT g, (g * 7919) % 100000, substr(md5(g::text), 1, 24),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1234567 microseconds',
       round((g % 100000) * 1.37, 2),
       jsonb_build_object('k', g % 1000, 'tag', 'tag-' || g % 97)
FROM generate_series($1::bigint, $2::bigint) g`

// server is the throwaway cluster and an administrative connection to the
// benchmark's database.
type server struct {
	pg    *testsupport.Postgres
	admin *pgx.Conn
}

func startServer(ctx context.Context) (*server, error) {
	pg, err := testsupport.Launch(testsupport.Options{Settings: clusterSettings()})
	if err != nil {
		return nil, fmt.Errorf("starting PostgreSQL: %w", err)
	}
	s := &server{pg: pg}
	if err := s.setup(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *server) setup(ctx context.Context) error {
	conn, err := s.connectAsSuperuser(ctx, "postgres")
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+database)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("creating database %s: %w", database, err)
	}
	if s.admin, err = s.connectAsSuperuser(ctx, database); err != nil {
		return err
	}
	if _, err := s.admin.Exec(ctx, setupSQL); err != nil {
		return fmt.Errorf("setting up database %s: %w", database, err)
	}
	return nil
}

// connectAsSuperuser connects over the Unix socket, keeping administration
// off the TCP path that the measured clients use.
func (s *server) connectAsSuperuser(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(s.pg.SuperuserURL(db))
	if err != nil {
		return nil, err
	}
	cfg.Host = s.pg.SocketDir()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to database %s as the superuser: %w", db, err)
	}
	return conn, nil
}

func (s *server) close() {
	if s.admin != nil {
		s.admin.Close(context.Background())
	}
	if err := s.pg.Destroy(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: stopping PostgreSQL: %v\n", err)
	}
}

// captureURL is how every measured client connects: over TCP as the
// capture user, like the connector.
func (s *server) captureURL() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(captureUser, capturePass),
		Host:     s.pg.Addr(),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// connectorConfig is the connector's endpoint configuration for slot,
// streaming in format ("binary": the default, auto; "text"; "": unset) and
// backfilling over conns connections (0: the connector's default).
func (s *server) connectorConfig(slot string, chunkSize int, format string, conns int) ([]byte, error) {
	advanced := map[string]any{"slotName": slot, "sslmode": "disable"}
	switch format {
	case "binary":
		advanced["replication_format"] = "auto"
	case "text":
		advanced["replication_format"] = "text"
	}
	if chunkSize > 0 {
		advanced["backfill_chunk_size"] = chunkSize
	}
	if conns > 0 {
		advanced["backfill_connections"] = conns
	}
	return json.Marshal(map[string]any{
		"address":  s.pg.Addr(),
		"database": database,
		"user":     captureUser,
		"password": capturePass,
		"advanced": advanced,
	})
}

// insert adds the rows with ids from through to, in transactions of txnRows.
func (s *server) insert(ctx context.Context, from, to int64, txnRows int64) error {
	return s.insertInto(ctx, "public."+benchTable, from, to, txnRows)
}

// insertInto is insert into table, which has the benchmark table's columns.
func (s *server) insertInto(ctx context.Context, table string, from, to int64, txnRows int64) error {
	sql := strings.Replace(insertSQL, "public.bench", table, 1)
	for lo := from; lo <= to; lo += txnRows {
		hi := min(lo+txnRows-1, to)
		if _, err := s.admin.Exec(ctx, sql, lo, hi); err != nil {
			return fmt.Errorf("inserting rows %d to %d: %w", lo, hi, err)
		}
	}
	return nil
}

// settle makes the table's pages all-visible and frozen and flushes them,
// so that no reader pays for hint bits or a checkpoint the others do not.
func (s *server) settle(ctx context.Context) error {
	for _, sql := range []string{"VACUUM (FREEZE, ANALYZE) public.bench", "CHECKPOINT"} {
		if _, err := s.admin.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// flushLSN is the server's WAL flush position: every committed transaction
// lies below it, and a walsender can stream up to it.
func (s *server) flushLSN(ctx context.Context) (pglogrepl.LSN, error) {
	var text string
	if err := s.admin.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&text); err != nil {
		return 0, fmt.Errorf("reading the WAL flush position: %w", err)
	}
	return pglogrepl.ParseLSN(text)
}

// createSlot (re)creates a pgoutput slot that starts at the current WAL.
func (s *server) createSlot(ctx context.Context, slot string) error {
	if _, err := s.admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot); err != nil {
		return fmt.Errorf("dropping replication slot %s: %w", slot, err)
	}
	if _, err := s.admin.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		return fmt.Errorf("creating replication slot %s: %w", slot, err)
	}
	return nil
}

// copySlot (re)creates dst as a copy of the slot src, at the same positions.
func (s *server) copySlot(ctx context.Context, src, dst string) error {
	if err := s.dropSlot(ctx, dst); err != nil {
		return err
	}
	if _, err := s.admin.Exec(ctx, "SELECT pg_copy_logical_replication_slot($1, $2)", src, dst); err != nil {
		return fmt.Errorf("copying replication slot %s to %s: %w", src, dst, err)
	}
	return nil
}

// dropSlot drops slot if it exists, once the walsender of a consumer that
// just stopped has let go of it (it may take a moment to notice).
func (s *server) dropSlot(ctx context.Context, slot string) error {
	for deadline := time.Now().Add(10 * time.Second); ; {
		var active bool
		err := s.admin.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_replication_slots WHERE slot_name = $1 AND active", slot).Scan(&active)
		if err != nil {
			return fmt.Errorf("reading replication slot %s: %w", slot, err)
		}
		if !active || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := s.admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot); err != nil {
		return fmt.Errorf("dropping replication slot %s: %w", slot, err)
	}
	return nil
}

// waitSlotActive waits until a process streams from slot.
func (s *server) waitSlotActive(ctx context.Context, slot string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var active bool
		err := s.admin.QueryRow(ctx, "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active)
		if err != nil {
			return fmt.Errorf("reading whether slot %s is active: %w", slot, err)
		}
		if active {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing streamed from slot %s within %v", slot, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *server) confirmedFlush(ctx context.Context, slot string) (pglogrepl.LSN, error) {
	var text string
	err := s.admin.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&text)
	if err != nil {
		return 0, fmt.Errorf("reading the confirmed position of slot %s: %w", slot, err)
	}
	return pglogrepl.ParseLSN(text)
}

func (s *server) version(ctx context.Context) string {
	var v string
	if err := s.admin.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "unknown"
	}
	// Distributions append their build, e.g. "15.18 (Debian 15.18-0+deb12u1)".
	v, _, _ = strings.Cut(v, " ")
	return v
}

// tableBytes is the on-disk size of the benchmark table (heap and TOAST).
func (s *server) tableBytes(ctx context.Context) int64 {
	var n int64
	if err := s.admin.QueryRow(ctx, "SELECT pg_table_size('public.bench')").Scan(&n); err != nil {
		return 0
	}
	return n
}

// selfCPU is the CPU time this process has used, for the consumers that run
// inside it.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
}

// countingWriter discards what it is given and counts it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// copyBaseline drains COPY (SELECT ... ORDER BY id) TO STDOUT, the fastest
// way PostgreSQL can hand a client the table in key order. It also returns
// the average size of a row in COPY's text format.
func copyBaseline(ctx context.Context, connURL string) (measurement, float64, error) {
	conn, err := pgconn.Connect(ctx, connURL)
	if err != nil {
		return measurement{}, 0, fmt.Errorf("COPY baseline: connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var out countingWriter
	cpu := selfCPU()
	start := time.Now()
	tag, err := conn.CopyTo(ctx, &out, "COPY (SELECT "+benchColumns+" FROM public.bench ORDER BY id) TO STDOUT")
	elapsed := time.Since(start)
	if err != nil {
		return measurement{}, 0, fmt.Errorf("COPY baseline: %w", err)
	}
	rows := tag.RowsAffected()
	m := measurement{
		Consumer:   "COPY (SELECT ... ORDER BY id) TO STDOUT, pgconn",
		Rows:       rows,
		Seconds:    elapsed.Seconds(),
		CPUSeconds: selfCPU() - cpu,
	}
	return m, float64(out.n) / float64(max(rows, 1)), nil
}

// keysetBaseline reads the table the way a careful Go program would: keyset
// chunks of chunkSize rows in binary format, decoded into Go values.
func keysetBaseline(ctx context.Context, connURL string, chunkSize int) (measurement, error) {
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return measurement{}, fmt.Errorf("keyset baseline: connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var (
		id, total int64
		n         int32
		s         string
		ts        time.Time
		amount    pgtype.Numeric
		doc       []byte
	)
	query := "SELECT " + benchColumns + " FROM public.bench WHERE id > $1 ORDER BY id LIMIT " + strconv.Itoa(chunkSize)
	cpu := selfCPU()
	start := time.Now()
	last := int64(-1 << 63)
	for {
		rows, err := conn.Query(ctx, query, last)
		if err != nil {
			return measurement{}, fmt.Errorf("keyset baseline: %w", err)
		}
		got := 0
		for rows.Next() {
			if err := rows.Scan(&id, &n, &s, &ts, &amount, &doc); err != nil {
				rows.Close()
				return measurement{}, fmt.Errorf("keyset baseline: %w", err)
			}
			got++
		}
		if err := rows.Err(); err != nil {
			return measurement{}, fmt.Errorf("keyset baseline: %w", err)
		}
		total += int64(got)
		last = id
		if got < chunkSize {
			break
		}
	}
	return measurement{
		Consumer:   fmt.Sprintf("pgx keyset loop, binary, %d-row chunks (reference)", chunkSize),
		Rows:       total,
		Seconds:    time.Since(start).Seconds(),
		CPUSeconds: selfCPU() - cpu,
	}, nil
}

// recvlogicalConninfo is how pg_recvlogical connects: over TCP as the
// capture user, like the connector.
func (s *server) recvlogicalConninfo() string {
	return strings.Join([]string{
		"host=" + s.pg.Host(), "port=" + strconv.Itoa(s.pg.Port()), "dbname=" + database,
		"user=" + captureUser, "password=" + capturePass, "sslmode=disable",
	}, " ")
}

// recvOptions are the pgoutput options pg_recvlogical is run with beyond
// protocol version 1 and text values, what the connector asks of 13.
type recvOptions struct {
	// binary asks for binary values (14+), as the connector does where it
	// can read every captured column in binary.
	binary bool
	// streaming asks for protocol version 2 and streaming 'on': the server
	// streaming a large transaction while decoding it to a consumer that
	// does nothing with it, which no streaming consumer can outrun.
	streaming bool
}

// recvlogicalBaseline drains slot up to endpos with pg_recvlogical and the
// pgoutput plugin with opts.
func recvlogicalBaseline(ctx context.Context, srv *server, slot string, endpos pglogrepl.LSN, rows int64, logPath string, opts recvOptions) (measurement, error) {
	proto, consumer := "1", "pg_recvlogical, pgoutput proto_version 1"
	if opts.streaming {
		proto, consumer = "2", "pg_recvlogical, proto_version 2, streaming on (reference)"
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return measurement{}, err
	}
	defer logFile.Close()
	args := []string{"--dbname", srv.recvlogicalConninfo(), "--slot", slot,
		"--start", "--endpos", endpos.String(), "--no-loop",
		"--option", "proto_version=" + proto, "--option", "publication_names=" + publication,
		"--file", "/dev/null"}
	if opts.streaming {
		args = append(args, "--option", "streaming=on")
	}
	if opts.binary {
		args = append(args, "--option", "binary=true")
		consumer += ", binary"
	}
	cmd := exec.CommandContext(ctx, "pg_recvlogical", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return measurement{}, fmt.Errorf("starting pg_recvlogical (is the PostgreSQL client installed?): %w", err)
	}
	walsender := watchWalsender(srv, slot)
	defer walsender.stop()
	var rss rssSampler
	rss.start(cmd.Process.Pid)
	err = cmd.Wait()
	elapsed := time.Since(start)
	rss.stop()
	walsenderSeconds := walsender.stop()
	if err != nil {
		return measurement{}, fmt.Errorf("pg_recvlogical: %w (log: %s)", err, logPath)
	}
	// pg_recvlogical confirms the position it stopped at: anything short of
	// endpos means it ended early and the figure would flatter it.
	confirmed, err := srv.confirmedFlush(ctx, slot)
	if err != nil {
		return measurement{}, err
	}
	if confirmed < endpos {
		return measurement{}, fmt.Errorf("pg_recvlogical exited at %s, before the end of the inserted rows at %s (log: %s)", confirmed, endpos, logPath)
	}
	m := measurement{
		Consumer:         consumer,
		Rows:             rows,
		Seconds:          elapsed.Seconds(),
		PeakRSS:          rss.peak(),
		WalsenderSeconds: walsenderSeconds,
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
		m.PeakRSS = max(m.PeakRSS, ru.Maxrss*1024)
	}
	return m, nil
}

// cpu returns the CPU seconds the server's processes have used so far: the
// postmaster's own and its exited children's (which it has reaped), and
// every live child's. A backend that exits between two readings moves from
// the second sum to the first, so differences count every backend's work
// whatever its lifetime. 0 when /proc cannot tell.
func (s *server) cpu() float64 {
	raw, err := os.ReadFile(filepath.Join(s.pg.DataDir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]))
	if err != nil {
		return 0
	}
	fields, ok := procStat(pm)
	if !ok {
		return 0
	}
	// Fields 14-17 of /proc/<pid>/stat, counted from 1: utime, stime,
	// cutime, cstime, in clock ticks; field 4 is the parent.
	ticks := statField(fields, 14) + statField(fields, 15) + statField(fields, 16) + statField(fields, 17)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pm {
			continue
		}
		if f, ok := procStat(pid); ok && statField(f, 4) == float64(pm) {
			ticks += statField(f, 14) + statField(f, 15)
		}
	}
	return ticks / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// procStat returns the fields of /proc/<pid>/stat after the command name
// (which may hold spaces), so that statField(f, n) is field n.
func procStat(pid int) ([]string, bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(raw[i+1:])), true
}

// statField is field n (1-based, as proc(5) numbers them) of a procStat.
func statField(f []string, n int) float64 {
	if n-3 >= len(f) || n < 3 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[n-3], 64)
	return v
}
