package main

import (
	"fmt"
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
