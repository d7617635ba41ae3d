package testsupport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StandbyOptions customize a standby started by StartStandby.
type StandbyOptions struct {
	// Slot is the physical replication slot on the primary the standby
	// streams from (primary_slot_name); StartStandby creates it.
	Slot string
	// Settings are extra postgresql.conf settings of the standby, e.g.
	// {"hot_standby_feedback": "on"}, on top of the primary's.
	Settings map[string]string
}

// StartStandby starts a streaming physical standby of p, a cluster this
// package runs, and waits until it has replayed everything p had written. It
// is stopped and deleted when the test ends.
//
// The server builds fetched for the tests have no pg_basebackup, and the
// installed one refuses newer servers, so the standby is copied from p's
// data directory between pg_backup_start and pg_backup_stop (PostgreSQL's
// low-level base backup): the copy may be torn, as it is taken while the
// primary runs, and replaying the WAL from the backup's start, which the
// standby streams through its slot, repairs it.
func (p *Postgres) StartStandby(t testing.TB, opts StandbyOptions) *Postgres {
	t.Helper()
	if p.baseDir == "" {
		t.Skipf("a standby needs a primary started by this package, but %s names an external server", ExternalPostgresEnv)
	}
	if opts.Slot == "" {
		opts.Slot = "standby"
	}
	s, err := p.startStandby(opts)
	if err != nil {
		t.Fatalf("starting a standby: %v", err)
	}
	t.Cleanup(func() {
		if err := s.destroy(); err != nil {
			t.Errorf("stopping the standby: %v", err)
		}
	})
	s.WaitReplayed(t, p)
	return s
}

func (p *Postgres) startStandby(opts StandbyOptions) (_ *Postgres, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	baseDir, err := os.MkdirTemp("", "pgcapture-pg-")
	if err != nil {
		return nil, err
	}
	s := &Postgres{
		host:          p.host,
		maintenanceDB: p.maintenanceDB,
		baseDir:       baseDir,
		binDir:        p.binDir,
		cred:          p.cred,
	}
	defer func() {
		if err != nil {
			s.destroy() //nolint:errcheck // the setup error is the one returned
		}
	}()
	if err := s.chown(baseDir); err != nil {
		return nil, err
	}
	if err := p.baseBackup(ctx, opts.Slot, s.DataDir()); err != nil {
		return nil, err
	}
	if err := s.configureStandby(p, opts); err != nil {
		return nil, fmt.Errorf("configuring the standby in %s: %w", s.DataDir(), err)
	}
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		s.url = &url.URL{Scheme: "postgres", User: p.url.User, Host: s.Addr(), RawQuery: "sslmode=disable"}
		err = s.start()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == 3 {
			return nil, err
		}
	}
}

// baseBackup creates the physical slot slot (reserving WAL from now on, so
// that the standby finds every segment from the backup's start) and copies
// p's data directory to dest under a non-exclusive low-level backup, whose
// backup_label it writes into the copy.
func (p *Postgres) baseBackup(ctx context.Context, slot, dest string) error {
	conn, err := p.connect(ctx, p.maintenanceDB, nil)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
		return fmt.Errorf("creating the standby's slot %q: %w", slot, err)
	}
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return err
	}
	// 15 renamed the functions and dropped exclusive backups.
	start, stop := `SELECT pg_backup_start('pgcapture standby', true)`, `SELECT labelfile, spcmapfile FROM pg_backup_stop(false)`
	if version < 150000 {
		start, stop = `SELECT pg_start_backup('pgcapture standby', true, false)`, `SELECT labelfile, spcmapfile FROM pg_stop_backup(false)`
	}
	if _, err := conn.Exec(ctx, start); err != nil {
		return fmt.Errorf("starting the base backup: %w", err)
	}
	if err := p.copyDataDir(p.DataDir(), dest); err != nil {
		return fmt.Errorf("copying the data directory: %w", err)
	}
	var label, spcmap string
	if err := conn.QueryRow(ctx, stop).Scan(&label, &spcmap); err != nil {
		return fmt.Errorf("ending the base backup: %w", err)
	}
	return p.writeFile(filepath.Join(dest, "backup_label"), []byte(label))
}

// copyDataDir copies a running cluster's data directory, leaving out what a
// base backup leaves out: the WAL (streamed instead), the primary's slots,
// its process files and its log. Files that vanish while it copies (a
// dropped relation, a removed temporary file) are skipped: the WAL replay
// accounts for them.
func (p *Postgres) copyDataDir(src, dest string) error {
	emptied := map[string]bool{"pg_wal": true, "pg_replslot": true, "pg_stat_tmp": true, "pg_dynshmem": true, "pg_notify": true, "pg_serial": true, "pg_snapshots": true, "pg_subtrans": true}
	skipped := map[string]bool{"postmaster.pid": true, "postmaster.opts": true, logFileName: true, "backup_label": true}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dest, rel)
		if d.IsDir() {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			if err := p.chown(target); err != nil {
				return err
			}
			if emptied[rel] {
				if rel == "pg_wal" {
					if err := os.Mkdir(filepath.Join(target, "archive_status"), 0o700); err != nil {
						return err
					}
					if err := p.chown(filepath.Join(target, "archive_status")); err != nil {
						return err
					}
				}
				return fs.SkipDir
			}
			return nil
		}
		if skipped[rel] || !d.Type().IsRegular() {
			return nil
		}
		return p.copyFile(path, target)
	})
}

func (p *Postgres) copyFile(src, dest string) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err = errors.Join(err, out.Close()); err != nil {
		return err
	}
	return p.chown(dest)
}

// configureStandby makes the copy a hot standby of p that streams through
// its slot.
func (s *Postgres) configureStandby(p *Postgres, opts StandbyOptions) error {
	settings := map[string]string{
		"unix_socket_directories": s.baseDir,
		"hot_standby":             "on",
		"primary_slot_name":       opts.Slot,
		// dbname lets 17's slot synchronization connect to a database; a
		// plain physical standby ignores it.
		"primary_conninfo": fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s application_name=standby",
			p.host, p.port, superuser, superuserPassword, p.maintenanceDB),
	}
	for name, value := range opts.Settings {
		settings[name] = value
	}
	var conf strings.Builder
	conf.WriteString("\n# Added by pgcapture/testsupport for the standby.\n")
	for name, value := range settings {
		value = strings.ReplaceAll(value, `\`, `\\`)
		value = strings.ReplaceAll(value, `'`, `''`)
		fmt.Fprintf(&conf, "%s = '%s'\n", name, value)
	}
	if err := appendFile(filepath.Join(s.DataDir(), "postgresql.conf"), conf.String()); err != nil {
		return err
	}
	return s.writeFile(filepath.Join(s.DataDir(), "standby.signal"), nil)
}

// WaitReplayed waits until s, a standby of primary, has replayed everything
// primary has committed so far.
func (s *Postgres) WaitReplayed(t testing.TB, primary *Postgres) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	pc, err := primary.connect(ctx, primary.maintenanceDB, nil)
	if err != nil {
		t.Fatalf("connecting to the primary: %v", err)
	}
	defer pc.Close(ctx)
	// The test clusters commit asynchronously, so the last records may not
	// be flushed yet, and the standby receives only flushed WAL: a
	// synchronous commit of a transaction that wrote WAL (here a logical
	// decoding message, which pgoutput does not publish) flushes everything
	// before it.
	if _, err := pc.Exec(ctx, `SET synchronous_commit = on`); err != nil {
		t.Fatalf("flushing the primary's WAL: %v", err)
	}
	if _, err := pc.Exec(ctx, `SELECT pg_logical_emit_message(true, 'pgcapture-testsupport', 'flush')`); err != nil {
		t.Fatalf("flushing the primary's WAL: %v", err)
	}
	var target string
	if err := pc.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()::text`).Scan(&target); err != nil {
		t.Fatalf("reading the primary's WAL position: %v", err)
	}
	sc, err := s.connect(ctx, s.maintenanceDB, nil)
	if err != nil {
		t.Fatalf("connecting to the standby: %v", err)
	}
	defer sc.Close(ctx)
	for {
		var done bool
		err := sc.QueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, target).Scan(&done)
		if err != nil {
			t.Fatalf("waiting for the standby to replay up to %s: %v", target, err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the standby did not replay up to %s within %v; its log: %s", target, sqlTimeout,
				tail(readFrom(filepath.Join(s.DataDir(), logFileName), 0), 20))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Promote makes a standby a primary and waits until it accepts writes.
func (s *Postgres) Promote(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := s.connect(ctx, s.maintenanceDB, nil)
	if err != nil {
		t.Fatalf("connecting to the standby: %v", err)
	}
	defer conn.Close(ctx)
	var promoted bool
	if err := conn.QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&promoted); err != nil || !promoted {
		t.Fatalf("promoting the standby: %v (promoted: %v); its log: %s", err, promoted,
			tail(readFrom(filepath.Join(s.DataDir(), logFileName), 0), 20))
	}
}

// stopped reports whether Stop shut down a cluster this package runs.
func (p *Postgres) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.baseDir != "" && p.server == nil
}

// Stop shuts the server down (fast) and leaves it down; its files stay until
// the test ends.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server == nil {
		return
	}
	if err := p.server.stop(syscall.SIGINT); err != nil {
		t.Fatalf("stopping PostgreSQL: %v", err)
	}
	p.server = nil
}
