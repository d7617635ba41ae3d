package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// profileEnv names the file the connector writes a CPU profile of its
// whole run to.
const profileEnv = "PGCAPTURE_CPUPROFILE"

// buildConnector builds ./source-postgres of the module at root into dir.
func buildConnector(root, dir string) (string, error) {
	bin := filepath.Join(dir, "source-postgres")
	cmd := exec.Command("go", "build", "-o", bin, "./source-postgres")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./source-postgres in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// moduleRoot finds the directory holding go.mod, walking up from the
// working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the benchmark from inside the repository (no go.mod found)")
		}
		dir = parent
	}
}
