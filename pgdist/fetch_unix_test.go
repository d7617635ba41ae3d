//go:build unix

package pgdist

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Tests run as root run PostgreSQL as an unprivileged OS user, which must
// reach and run the cached build whatever the umask of the process that
// fetched it.
func TestFetchIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	reg := newTestRegistry(t, map[string][]byte{"17.10.0-beta.17": packageTarball(t, "17.10.0-beta.17")})
	dir := filepath.Join(t.TempDir(), "cache", "pgcapture")
	b, err := reg.fetcher(dir, nil).Fetch(context.Background(), mustWant(t, "17"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		dir:                                 0o755 | os.ModeDir,
		filepath.Dir(b.Dir):                 0o755 | os.ModeDir,
		b.Dir:                               0o755 | os.ModeDir,
		b.BinDir():                          0o755 | os.ModeDir,
		filepath.Join(b.BinDir(), "initdb"): 0o755,
		filepath.Join(b.Dir, "native", "lib", "postgresql"):                0o755 | os.ModeDir,
		filepath.Join(b.Dir, "native", "lib", "postgresql", "pgoutput.so"): 0o644,
	} {
		if info, err := os.Stat(path); err != nil {
			t.Error(err)
		} else if info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, info.Mode(), want)
		}
	}
}
