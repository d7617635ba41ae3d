package testsupport

// This file is over 500 lines because it is the whole life of a throwaway
// cluster: initdb, start, stop, settings, TLS and databases (its faults are in
// postgres_faults.go).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ExternalPostgresEnv names the environment variable that points
// SharedPostgres at an existing server instead of a throwaway cluster. Its
// value is a superuser URL, e.g. postgres://postgres:secret@db:5432/postgres;
// the server must run with wal_level=logical.
const ExternalPostgresEnv = "PGCAPTURE_TEST_POSTGRES"

const (
	superuser         = "postgres"
	superuserPassword = "postgres"
	logFileName       = "postgres.log"

	// Generous, because CI machines are slow and run several clusters at once.
	startTimeout = 60 * time.Second
	sqlTimeout   = 60 * time.Second
	// How long each shutdown mode gets before escalating to the next one.
	stopTimeout = 10 * time.Second
)

// Options customize a cluster started by StartPostgres.
type Options struct {
	// Settings are extra postgresql.conf settings, e.g. {"ssl": "on"}. They
	// override the package's defaults, except port, which the package picks.
	Settings map[string]string
	// Files are written into the data directory, owned by the server's OS
	// user with mode 0600 (what PostgreSQL demands of a TLS key). Names are
	// plain file names, e.g. "server.key". They are written last, so a file
	// named pg_hba.conf replaces the generated one.
	Files map[string][]byte
	// HBA lines are placed before the default pg_hba.conf lines, so they take
	// precedence (the first matching line wins).
	HBA []string
}

// Postgres is a PostgreSQL server for tests. Unix-socket connections are
// trusted; TCP connections on 127.0.0.1 authenticate with scram-sha-256, the
// superuser being postgres/postgres.
type Postgres struct {
	host          string
	port          int
	url           *url.URL // superuser URL; the path is set per database
	maintenanceDB string   // where CREATE/DROP DATABASE are issued

	// The rest is set only for a cluster this package runs, not for an
	// external server.
	baseDir string              // holds the data directory and the Unix socket
	binDir  string              // PostgreSQL server binaries
	cred    *syscall.Credential // the server's OS user; nil unless running as root

	mu     sync.Mutex // guards server across Restart and cleanup
	server *serverProcess
}

// StartPostgres initializes and starts a new cluster. It is stopped and
// deleted when the test ends.
func StartPostgres(t testing.TB, opts Options) *Postgres {
	t.Helper()
	p, err := startCluster(opts)
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := p.destroy(); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	return p
}

// Launch initializes and starts a new cluster outside of a test, for tools
// such as the demo. The caller must Destroy it.
func Launch(opts Options) (*Postgres, error) { return startCluster(opts) }

// Destroy stops a cluster started by Launch and deletes its files.
func (p *Postgres) Destroy() error { return p.destroy() }

// The shared server is package state by necessity: it outlives any one test
// so that a test binary pays for initdb once.
var shared struct {
	mu  sync.Mutex
	pg  *Postgres
	err error
}

// SharedPostgres returns the default server of this test binary, starting a
// cluster on first use, or the server named by PGCAPTURE_TEST_POSTGRES. Tests
// sharing it should isolate themselves with NewDatabase. The cluster lives
// until the process exits; call StopShared from TestMain to delete it.
func SharedPostgres(t testing.TB) *Postgres {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.pg == nil && shared.err == nil {
		if raw := os.Getenv(ExternalPostgresEnv); raw != "" {
			shared.pg, shared.err = externalPostgres(raw)
		} else {
			shared.pg, shared.err = startCluster(Options{})
		}
	}
	if shared.err != nil {
		t.Fatalf("starting the shared PostgreSQL: %v", shared.err)
	}
	return shared.pg
}

// StopShared releases what this test binary shares between tests: it stops
// and deletes the cluster started by SharedPostgres, if any (an external
// server is left alone), and deletes the programs built for the tests (the
// connector of BuildConnector, the SSH server of StartSSHD).
// Call it from TestMain after m.Run:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testsupport.StopShared()
//		os.Exit(code)
//	}
//
// Without it the cluster still shuts down when the process exits, but the
// temporary directories are left behind.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.pg != nil {
		if err := shared.pg.destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "testsupport: stopping the shared PostgreSQL: %v\n", err)
		}
	}
	shared.pg, shared.err = nil, nil
	if err := removePrograms(); err != nil {
		fmt.Fprintf(os.Stderr, "testsupport: deleting the programs built for the tests: %v\n", err)
	}
}

// Host returns the server's TCP host, "127.0.0.1" for a local cluster.
func (p *Postgres) Host() string { return p.host }

// Port returns the server's TCP port.
func (p *Postgres) Port() int { return p.port }

// Addr returns "host:port".
func (p *Postgres) Addr() string { return net.JoinHostPort(p.host, strconv.Itoa(p.port)) }

// SocketDir returns the directory holding the server's Unix socket, or "" for
// an external server.
func (p *Postgres) SocketDir() string { return p.baseDir }

// DataDir returns the cluster's data directory, or "" for an external server.
// The server log is the file postgres.log in it.
func (p *Postgres) DataDir() string {
	if p.baseDir == "" {
		return ""
	}
	return filepath.Join(p.baseDir, "data")
}

// SuperuserURL returns a URL connecting to database over TCP as the
// superuser, e.g. postgres://postgres:postgres@127.0.0.1:5432/db?sslmode=disable.
func (p *Postgres) SuperuserURL(database string) string {
	u := *p.url
	u.Path, u.RawPath = "/"+database, ""
	return u.String()
}

// NewDatabase creates a database with a unique name derived from the test's
// name and returns the name. At cleanup its backends are terminated, its
// replication slots dropped, and the database dropped.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := databaseName(t.Name())
	p.Exec(t, p.maintenanceDB, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() {
		if p.stopped() {
			return // the test stopped the cluster (see Stop); it is deleted anyway
		}
		ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
		defer cancel()
		if err := p.dropDatabase(ctx, name); err != nil {
			t.Errorf("dropping test database %q: %v", name, err)
		}
	})
	return name
}

// Connect opens a superuser connection to database, closed at cleanup.
func (p *Postgres) Connect(t testing.TB, database string) *pgx.Conn {
	t.Helper()
	return p.ConnectWith(t, database, nil)
}

// ConnectWith is Connect with params set for the session at its start (as
// the connector sets its session settings).
func (p *Postgres) ConnectWith(t testing.TB, database string, params map[string]string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := p.connect(ctx, database, params)
	if err != nil {
		t.Fatalf("connecting to database %q: %v", database, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// Exec runs sql in database as the superuser and fails the test on error.
// Without args, sql may hold several statements.
func (p *Postgres) Exec(t testing.TB, database, sql string, args ...any) {
	t.Helper()
	// Not t.Context(): Exec is also called from cleanups, when it is done.
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := p.connect(ctx, database, nil)
	if err != nil {
		t.Fatalf("executing %q: connecting to database %q: %v", sql, database, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("executing %q in database %q: %v", sql, database, err)
	}
}

// Restart stops the cluster (a fast shutdown) and starts it again on the same
// port, e.g. to apply settings that need a restart. It skips the test when
// the server is external.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	if p.baseDir == "" {
		t.Skipf("Restart needs a cluster started by this package, but %s names an external server", ExternalPostgresEnv)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server != nil {
		// SIGINT is PostgreSQL's fast shutdown: sessions are rolled back and a
		// shutdown checkpoint written, so the restart needs no recovery.
		if err := p.server.stop(syscall.SIGINT); err != nil {
			t.Fatalf("restarting PostgreSQL: %v", err)
		}
		p.server = nil
	}
	if err := p.start(); err != nil {
		t.Fatalf("restarting PostgreSQL: %v", err)
	}
}

// connect opens a superuser connection. A local cluster is reached over its
// Unix socket, where trust authentication skips SCRAM's deliberately slow key
// derivation.
func (p *Postgres) connect(ctx context.Context, database string, params map[string]string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(p.SuperuserURL(database))
	if err != nil {
		return nil, err
	}
	if p.baseDir != "" {
		cfg.Host = p.baseDir
	}
	maps.Copy(cfg.RuntimeParams, params)
	return pgx.ConnectConfig(ctx, cfg)
}

// dropDatabase drops a database that tests may have left busy: connected
// sessions (including walsenders) keep its replication slots active, active
// slots cannot be dropped, and a database with slots cannot be dropped. The
// terminated backends exit asynchronously, so it retries until ctx is done.
func (p *Postgres) dropDatabase(ctx context.Context, name string) error {
	conn, err := p.connect(ctx, p.maintenanceDB, nil)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	tryDrop := func() error {
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
			return fmt.Errorf("terminating its sessions: %w", err)
		}
		if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active`, name); err != nil {
			return fmt.Errorf("dropping its replication slots: %w", err)
		}
		var remaining int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).Scan(&remaining); err != nil {
			return fmt.Errorf("counting its replication slots: %w", err)
		}
		if remaining > 0 {
			return fmt.Errorf("%d of its replication slots are still in use", remaining)
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return err
		}
		return nil
	}

	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		err := tryDrop()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-poll.C:
		}
	}
}

// databaseName derives a valid, unique, unquoted-looking database name from a
// test name, e.g. "TestCapture/Deletes" → "testcapture_deletes_1a2b3c4d".
func databaseName(testName string) string {
	const maxPrefix = 40 // leaves room for the suffix within NAMEDATALEN-1 = 63
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= maxPrefix {
			break
		}
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	prefix := strings.TrimSuffix(b.String(), "_")
	if prefix == "" {
		prefix = "test"
	}
	return fmt.Sprintf("%s_%08x", prefix, rand.Uint32())
}

// externalPostgres describes the server named by PGCAPTURE_TEST_POSTGRES,
// checking up front that it can do logical replication.
func externalPostgres(raw string) (*Postgres, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Hostname() == "" {
		return nil, fmt.Errorf("%s must be a superuser URL such as postgres://postgres:secret@localhost:5432/postgres", ExternalPostgresEnv)
	}
	port := 5432
	if s := u.Port(); s != "" {
		if port, err = strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("%s: invalid port %q", ExternalPostgresEnv, s)
		}
	}
	maintenanceDB := strings.TrimPrefix(u.Path, "/")
	if maintenanceDB == "" {
		maintenanceDB = "postgres"
	}
	p := &Postgres{host: u.Hostname(), port: port, url: u, maintenanceDB: maintenanceDB}

	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := p.connect(ctx, maintenanceDB, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s (%s): %w", ExternalPostgresEnv, u.Redacted(), err)
	}
	defer conn.Close(ctx)
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return nil, fmt.Errorf("querying wal_level of %s: %w", u.Redacted(), err)
	}
	if walLevel != "logical" {
		return nil, fmt.Errorf("server %s has wal_level=%s; the tests need wal_level=logical (set it in postgresql.conf and restart)", u.Redacted(), walLevel)
	}
	return p, nil
}

// errPortInUse reports that another process took the port picked for a new
// cluster between picking it and the server binding it.
var errPortInUse = errors.New("port already in use")

// startCluster runs initdb, writes the configuration and starts the server.
func startCluster(opts Options) (_ *Postgres, err error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	binDir, err := findBinDir(cred)
	if err != nil {
		return nil, err
	}
	// A directory of our own rather than t.TempDir(): it must be owned by the
	// server's OS user, and its path short enough for a Unix socket name.
	baseDir, err := os.MkdirTemp("", "pgcapture-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		host:          "127.0.0.1",
		maintenanceDB: "postgres",
		baseDir:       baseDir,
		binDir:        binDir,
		cred:          cred,
	}
	defer func() {
		if err != nil {
			p.destroy() //nolint:errcheck // the setup error is the one returned
		}
	}()
	if err := p.chown(baseDir); err != nil {
		return nil, err
	}
	if err := p.initdb(); err != nil {
		return nil, err
	}
	if err := p.configure(opts); err != nil {
		return nil, fmt.Errorf("configuring the cluster in %s: %w", p.DataDir(), err)
	}

	// Another process may grab the free port before the server binds it;
	// a fresh port then fixes it.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p.port = port
		p.url = &url.URL{
			Scheme:   "postgres",
			User:     url.UserPassword(superuser, superuserPassword),
			Host:     p.Addr(),
			RawQuery: "sslmode=disable",
		}
		err = p.start()
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == 3 {
			return nil, err
		}
	}
}

func (o Options) validate() error {
	for name, value := range o.Settings {
		if name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '.')
		}) {
			return fmt.Errorf("Options.Settings: invalid setting name %q (letters, digits, '_' and '.' only)", name)
		}
		if strings.ContainsAny(value, "\n\r\x00") {
			return fmt.Errorf("Options.Settings: the value of %q must be a single line", name)
		}
	}
	for name := range o.Files {
		if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
			return fmt.Errorf("Options.Files: %q must be a plain file name such as \"server.key\"", name)
		}
	}
	for _, line := range o.HBA {
		if strings.ContainsAny(line, "\n\r\x00") {
			return fmt.Errorf("Options.HBA: %q must be a single line", line)
		}
	}
	return nil
}

func (p *Postgres) initdb() error {
	pwfile := filepath.Join(p.baseDir, "pwfile")
	if err := p.writeFile(pwfile, []byte(superuserPassword+"\n")); err != nil {
		return err
	}
	defer os.Remove(pwfile)

	run := func(locale string) ([]byte, error) {
		return p.command("initdb",
			"--pgdata", p.DataDir(),
			"--username", superuser,
			"--pwfile", pwfile,
			// On 13, whose password_encryption defaults to md5, this makes
			// initdb store the password as SCRAM, which pg_hba.conf asks for.
			"--auth-host", "scram-sha-256",
			"--auth-local", "trust",
			"--encoding", "UTF8",
			"--locale", locale,
			"--no-sync",
		).CombinedOutput()
	}
	out, err := run("C.UTF-8")
	if err != nil && bytes.Contains(out, []byte("locale")) {
		// C.UTF-8 is missing from older C libraries; plain C sorts the same.
		out, err = run("C")
	}
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", p.DataDir(), err, out)
	}
	return nil
}

// configure appends the test settings to postgresql.conf, where, unlike on
// the command line, ALTER SYSTEM can still override them before a Restart.
func (p *Postgres) configure(opts Options) error {
	var conf strings.Builder
	conf.WriteString("\n# Added by pgcapture/testsupport; later lines win.\n")
	setting := func(name, value string) {
		value = strings.ReplaceAll(value, `\`, `\\`)
		value = strings.ReplaceAll(value, `'`, `''`)
		fmt.Fprintf(&conf, "%s = '%s'\n", name, value)
	}
	setting("listen_addresses", "127.0.0.1")
	setting("unix_socket_directories", p.baseDir)
	setting("wal_level", "logical")
	setting("max_replication_slots", "40")
	setting("max_wal_senders", "40")
	// Durability is pointless for a cluster deleted after the test.
	setting("fsync", "off")
	setting("synchronous_commit", "off")
	setting("full_page_writes", "off")
	for _, name := range slices.Sorted(maps.Keys(opts.Settings)) {
		setting(name, opts.Settings[name])
	}
	if err := appendFile(filepath.Join(p.DataDir(), "postgresql.conf"), conf.String()); err != nil {
		return err
	}

	var hba strings.Builder
	for _, line := range opts.HBA {
		hba.WriteString(line + "\n")
	}
	// Host connections must authenticate by password: tests check how wrong
	// passwords are reported.
	hba.WriteString(`local all         all              trust
local replication all              trust
host  all         all 127.0.0.1/32 scram-sha-256
host  replication all 127.0.0.1/32 scram-sha-256
`)
	if err := p.writeFile(filepath.Join(p.DataDir(), "pg_hba.conf"), []byte(hba.String())); err != nil {
		return err
	}

	for _, name := range slices.Sorted(maps.Keys(opts.Files)) {
		if err := p.writeFile(filepath.Join(p.DataDir(), name), opts.Files[name]); err != nil {
			return err
		}
	}
	return nil
}

// start starts the server on p.port and waits until it accepts connections.
// The caller holds p.mu or has sole access to p.
func (p *Postgres) start() error {
	logPath := filepath.Join(p.DataDir(), logFileName)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the server has its own descriptor
	if err := p.chown(logPath); err != nil {
		return err
	}
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}

	cmd := p.command("postgres", "-D", p.DataDir(), "-p", strconv.Itoa(p.port))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	srv := &serverProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		srv.err = cmd.Wait()
		close(srv.done)
	}()

	if err := p.waitReady(srv); err != nil {
		srv.stop(syscall.SIGQUIT) //nolint:errcheck // the startup failure is the error; the log says why
		log := readFrom(logPath, logStart)
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("port %d: %w", p.port, errPortInUse)
		}
		return fmt.Errorf("%w; server log %s:\n%s", err, logPath, tail(log, 30))
	}
	p.server = srv
	return nil
}

// waitReady polls postmaster.pid, where the server announces that it accepts
// connections (the same signal pg_ctl waits for).
func (p *Postgres) waitReady(srv *serverProcess) error {
	pidFile := filepath.Join(p.DataDir(), "postmaster.pid")
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		if serverReady(pidFile, srv.cmd.Process.Pid) {
			return nil
		}
		select {
		case <-srv.done:
			return fmt.Errorf("postgres exited during start-up: %v", srv.err)
		case <-deadline.C:
			return fmt.Errorf("postgres did not accept connections within %v", startTimeout)
		case <-poll.C:
		}
	}
}

// serverReady reports whether postmaster.pid belongs to pid and its status
// line (the 8th) says "ready", or "standby" for a hot standby that accepts
// read-only connections.
func serverReady(pidFile string, pid int) bool {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	lines := strings.Split(string(data), "\n")
	return len(lines) >= 8 && lines[0] == strconv.Itoa(pid) &&
		(strings.TrimSpace(lines[7]) == "ready" || strings.TrimSpace(lines[7]) == "standby")
}

// destroy stops the server and deletes its directory. Safe on a partially
// started or external server.
func (p *Postgres) destroy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var stopErr error
	if p.server != nil {
		// SIGQUIT is an immediate shutdown: no checkpoint for data that is
		// about to be deleted.
		stopErr = p.server.stop(syscall.SIGQUIT)
		p.server = nil
	}
	if p.baseDir == "" {
		return stopErr
	}
	return errors.Join(stopErr, os.RemoveAll(p.baseDir))
}

// command prepares a server binary to run as the server's OS user.
func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.binDir, name), args...)
	cmd.Dir = p.baseDir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: p.cred,
		// Should the test binary die without cleaning up, the server shuts
		// down (immediately) instead of lingering.
		Pdeathsig: syscall.SIGQUIT,
	}
	return cmd
}

// serverEnv is the test's environment without the libpq and locale variables
// that would change how initdb and the server behave, with messages in
// English so that failures can be recognized and read.
func serverEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG")
	})
	return append(env, "LC_ALL=C")
}

// serverProcess is a running postmaster.
type serverProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // its exit status; read only after done is closed
}

// stop sends sig and waits for the server to exit, escalating to an immediate
// shutdown and then SIGKILL if it takes too long (a fast shutdown waits for
// walsenders, which can stall on a replication client that stopped reading).
func (s *serverProcess) stop(sig syscall.Signal) error {
	for _, sig := range []syscall.Signal{sig, syscall.SIGQUIT, syscall.SIGKILL} {
		if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signalling postgres: %w", err)
		}
		select {
		case <-s.done:
			return nil
		case <-time.After(stopTimeout):
		}
	}
	return fmt.Errorf("postgres (pid %d) did not exit after SIGKILL", s.cmd.Process.Pid)
}

// serverCredential returns the OS user to run initdb and postgres as, which
// refuse to run as root: "postgres" if it exists, else "nobody". It is nil
// for a normal user, who runs them as themself.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New(`running as root, but PostgreSQL refuses to run as root and neither the "postgres" nor the "nobody" OS user exists; create one (useradd postgres) or run the tests as a normal user`)
}

func (p *Postgres) chown(path string) error {
	if p.cred == nil {
		return nil
	}
	return os.Chown(path, int(p.cred.Uid), int(p.cred.Gid))
}

// writeFile writes a file the server can read but nobody else can.
func (p *Postgres) writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil { // WriteFile keeps an existing file's mode
		return err
	}
	return p.chown(path)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}

// readFrom returns the contents of a file from offset on, or a note saying
// why it could not be read.
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(data)
}

// tail returns the last n lines of text.
func tail(text string, n int) string {
	text = strings.TrimRight(text, "\n")
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
