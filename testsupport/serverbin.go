package testsupport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pgcapture/pgdist"
)

// PostgresVersionEnv names the environment variable that picks the
// PostgreSQL release of the clusters this package runs: a major version such
// as 16, or a minor version such as 16.4. That release is fetched (see
// package pgdist) even when a server is installed, so that the tests can run
// against every supported release.
const PostgresVersionEnv = "PGCAPTURE_POSTGRES_VERSION"

const (
	// fetchedMajor is the release fetched when none is installed or asked
	// for: Debian 12's, which the whole suite runs on in CI (.ci/versions
	// runs the end-to-end tests on every other supported major).
	fetchedMajor = 15
	// A build is some 25 MB; generous for a slow network.
	fetchTimeout = 10 * time.Minute
	// systemBuildCache holds fetched builds when tests run as root and the
	// server's OS user cannot reach root's own cache directory (root's home
	// is usually private).
	systemBuildCache = "/var/cache/pgcapture/postgres"
)

// findBinDir locates the server binaries for clusters run as cred (nil: as
// the current user), in this order:
//
//  1. PGCAPTURE_POSTGRES_VERSION set: a fetched build of that release;
//  2. an installed server: pg_config's bindir if it has initdb (Debian's
//     /usr/bin/pg_config may belong to a client-only package), else the
//     newest /usr/lib/postgresql/*/bin;
//  3. a fetched build of PostgreSQL fetchedMajor.
//
// (PGCAPTURE_TEST_POSTGRES, an external server for SharedPostgres, needs no
// binaries at all.)
func findBinDir(cred *syscall.Credential) (string, error) {
	if raw := os.Getenv(PostgresVersionEnv); raw != "" {
		want, err := pgdist.ParseWant(raw)
		if err != nil {
			return "", fmt.Errorf("%s: %w", PostgresVersionEnv, err)
		}
		dir, err := fetchBinDir(want, cred)
		if err != nil {
			return "", fmt.Errorf("%w (unset %s to use an installed server)", err, PostgresVersionEnv)
		}
		return dir, nil
	}
	if dir := installedBinDir(); dir != "" {
		return dir, nil
	}
	dir, err := fetchBinDir(pgdist.Want{Major: fetchedMajor, Minor: -1}, cred)
	if err != nil {
		return "", fmt.Errorf("no PostgreSQL server is installed (neither `pg_config --bindir` nor /usr/lib/postgresql/*/bin has initdb), "+
			"and fetching one failed: %w; install the PostgreSQL server (e.g. apt-get install postgresql) or let HTTPS reach registry.npmjs.org", err)
	}
	return dir, nil
}

// installedBinDir returns the bin directory of an installed server, or "".
func installedBinDir() string {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if isFile(filepath.Join(dir, "initdb")) {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVersion := "", -1.0
	for _, dir := range dirs {
		version, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		if err == nil && version > bestVersion && isFile(filepath.Join(dir, "initdb")) {
			best, bestVersion = dir, version
		}
	}
	return best
}

// fetchBinDir fetches a build (or finds it cached) and returns its bin
// directory. The fetcher says on stderr what it downloads, and where.
func fetchBinDir(want pgdist.Want, cred *syscall.Credential) (string, error) {
	cache, err := buildCache(cred)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	fetcher := &pgdist.Fetcher{Dir: cache, Log: os.Stderr}
	b, err := fetcher.Fetch(ctx, want)
	if err != nil {
		return "", fmt.Errorf("fetching PostgreSQL %s: %w", want, err)
	}
	return b.BinDir(), nil
}

// buildCache returns where fetched builds are kept: the user's cache
// directory (pgdist.DefaultDir), unless the server runs as another OS user
// who cannot reach it, as when root, whose home is private, runs the tests;
// then /var/cache/pgcapture/postgres.
func buildCache(cred *syscall.Credential) (string, error) {
	dir, err := pgdist.DefaultDir()
	if err != nil {
		return "", err
	}
	if cred == nil || searchableBy(dir, cred) {
		return dir, nil
	}
	return systemBuildCache, nil
}

// searchableBy reports whether the OS user cred can reach path: each
// existing directory on the way must let it search (missing ones are
// created searchable by everyone). Supplementary groups are not considered,
// so the answer errs on the side of no.
func searchableBy(path string, cred *syscall.Credential) bool {
	for dir := filepath.Clean(path); ; dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil || !info.IsDir():
			return false
		default:
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				return false
			}
			perm := info.Mode().Perm()
			var search fs.FileMode = 0o001
			if st.Uid == cred.Uid {
				search = 0o100
			} else if st.Gid == cred.Gid {
				search = 0o010
			}
			if perm&search == 0 {
				return false
			}
		}
		if parent := filepath.Dir(dir); parent == dir {
			return true
		}
	}
}
