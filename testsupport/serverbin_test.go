package testsupport

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// As root, the server runs as another OS user, which must reach the
// fetched binaries; root's own cache under a private home is no use to it.
func TestSearchableBy(t *testing.T) {
	// Not t.TempDir(), whose parent is searchable by its owner only.
	base, err := os.MkdirTemp("", "pgcapture-searchable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) }) //nolint:errcheck // best-effort cleanup of a temporary directory
	open := filepath.Join(base, "open")
	closed := filepath.Join(base, "open", "closed")
	for dir, mode := range map[string]os.FileMode{open: 0o755, closed: 0o700} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	info, err := os.Stat(base)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	owner := &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
	stranger := &syscall.Credential{Uid: st.Uid + 1000, Gid: st.Gid + 1000}
	sameGroup := &syscall.Credential{Uid: st.Uid + 1000, Gid: st.Gid}
	if !searchableBy(filepath.Dir(base), stranger) {
		t.Fatalf("the temporary directory %s must be searchable by everyone for this test", filepath.Dir(base))
	}

	if err := os.Chmod(base, 0o750); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		cred *syscall.Credential
		want bool
	}{
		{"the owner, through owner-only directories", filepath.Join(closed, "x"), owner, true},
		{"a stranger, under a directory closed to others", filepath.Join(open, "cache"), stranger, false},
		{"the group, under a directory open to the group", filepath.Join(open, "cache", "missing"), sameGroup, true},
		{"the group, under a directory closed to it", filepath.Join(closed, "cache"), sameGroup, false},
	}
	for _, tt := range tests {
		if got := searchableBy(tt.path, tt.cred); got != tt.want {
			t.Errorf("%s: searchableBy(%s) = %v, want %v", tt.name, tt.path, got, tt.want)
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if !searchableBy(filepath.Join(open, "not", "yet", "made"), stranger) {
		t.Error("a stranger cannot reach missing directories under world-searchable ones")
	}
}

func TestFindBinDirRefusesBadVersion(t *testing.T) {
	t.Setenv(PostgresVersionEnv, "latest")
	_, err := findBinDir(nil)
	if err == nil || !strings.Contains(err.Error(), PostgresVersionEnv) || !strings.Contains(err.Error(), "such as 17") {
		t.Fatalf("findBinDir with %s=latest: %v, want an error naming the variable and its form", PostgresVersionEnv, err)
	}
}
