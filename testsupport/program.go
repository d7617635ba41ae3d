package testsupport

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// program is a program of this module that tests run, built on first use
// into a temporary directory and deleted by StopShared, so that a test
// binary builds it once.
type program struct {
	pkg  string // the package to build, e.g. "./source-postgres"
	name string // the binary's file name

	mu   sync.Mutex
	dir  string
	path string
	err  error
}

// The programs are package state by necessity, like the shared cluster:
// they outlive any one test.
var (
	connectorProgram = &program{pkg: "./source-postgres", name: "source-postgres"}
	// Named sshd like OpenSSH's server, which it stands in for: tests tell
	// the server's connections by the process name.
	goSSHDProgram = &program{pkg: "./testsupport/gosshd", name: "sshd"}
)

// build returns the binary's path, building it with the given go build
// flags on first use.
func (p *program) build(flags ...string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.path == "" && p.err == nil {
		p.dir, p.path, p.err = p.compile(flags)
	}
	return p.path, p.err
}

func (p *program) compile(flags []string) (dir, path string, err error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", "", err
	}
	dir, err = os.MkdirTemp("", "pgcapture-"+filepath.Base(p.pkg)+"-")
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, p.name)
	args := append([]string{"build", "-o", path}, flags...)
	cmd := exec.Command("go", append(args, p.pkg)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir) //nolint:errcheck // best-effort cleanup of a temporary directory
		return "", "", fmt.Errorf("go build %s in %s: %w\n%s", p.pkg, root, err, out)
	}
	return dir, path, nil
}

// remove deletes the binary, if built; the next build makes it again.
func (p *program) remove() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if p.dir != "" {
		err = os.RemoveAll(p.dir)
	}
	p.dir, p.path, p.err = "", "", nil
	return err
}

// removePrograms deletes every program built so far.
func removePrograms() error {
	return errors.Join(connectorProgram.remove(), goSSHDProgram.remove())
}
