package pgdist

import "fmt"

// Platform names the @embedded-postgres package built for a Go target, e.g.
// "linux-x64" for linux/amd64. The names follow Node's os.platform() and
// os.arch(), which the packages are published under.
func Platform(goos, goarch string) (string, error) {
	arch := map[string]string{
		"amd64":   "x64",
		"arm64":   "arm64",
		"arm":     "arm",
		"386":     "ia32",
		"ppc64le": "ppc64", // Node calls little-endian POWER ppc64
	}[goarch]
	switch {
	case goos == "linux" && arch != "":
	case goos == "darwin" && (arch == "x64" || arch == "arm64"):
	case goos == "windows" && arch == "x64":
	default:
		return "", fmt.Errorf("no PostgreSQL server build is published for %s/%s; install the PostgreSQL server from your system's packages", goos, goarch)
	}
	return goos + "-" + arch, nil
}
