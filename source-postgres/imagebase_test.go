package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Stand-ins for the Dockerfile's base images, which live in registries a test
// cannot count on reaching: podman imports a root file system the test
// assembles from the host, tagged with a hash of what went into it, so that
// later runs reuse it until the host's Go or the stand-in itself changes.

// standIn is a base image: its repository, the configuration podman import
// gives it (Dockerfile instructions as INSTRUCTION=value), and its files.
type standIn struct {
	repo    string
	changes []string
	files   func(w rootWriter)
}

// rootWriter receives a stand-in's files, parents before children. It is
// given them twice: a hashing writer computes the image's tag, and, when
// podman has no image with that tag, a tar writer makes the tarball podman
// imports. A writer keeps its first error for the caller to check.
type rootWriter interface {
	dir(name string, mode int64, uid int)
	file(name string, mode int64, data string)
	symlink(name, target string)
	// host copies a host file, or a directory tree, owned by root.
	host(name, path string)
}

// goStandIn stands in for golang:*-bookworm as the build stage uses it: the
// host's Go toolchain, a shell (a static busybox) for RUN, and no network:
// go mod download reads the host's module cache, which the build mounts at
// /goproxy.
func goStandIn(goroot, busybox string) standIn {
	return standIn{
		repo: "localhost/pgcapture-go-standin",
		changes: []string{
			"ENV=PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"ENV=GOPATH=/go",
			"ENV=GOTOOLCHAIN=local",
			"ENV=GOPROXY=file:///goproxy",
			"WORKDIR=/go",
		},
		files: func(w rootWriter) {
			w.dir("bin", 0o755, 0)
			w.host("bin/busybox", busybox)
			w.symlink("bin/sh", "busybox")
			w.dir("etc", 0o755, 0)
			w.file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n")
			w.file("etc/group", 0o644, "root:x:0:\n")
			w.dir("go", 0o755, 0)
			w.dir("root", 0o700, 0)
			w.dir("tmp", 0o1777, 0)
			w.dir("usr", 0o755, 0)
			w.dir("usr/local", 0o755, 0)
			w.host("usr/local/go", goroot)
		},
	}
}

// baseStandIn stands in for gcr.io/distroless/static-debian12:nonroot: no C
// library and no shell, the users root, nobody and nonroot (65532) with a
// home, a writable /tmp, CA certificates (the host's, if it has a bundle),
// and the same configuration.
func baseStandIn(caBundle string) standIn {
	return standIn{
		repo: "localhost/pgcapture-base-standin",
		changes: []string{
			"ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"ENV=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
			"USER=65532",
			"WORKDIR=/home/nonroot",
		},
		files: func(w rootWriter) {
			w.dir("etc", 0o755, 0)
			w.file("etc/passwd", 0o644, "root:x:0:0:root:/root:/sbin/nologin\n"+
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
			w.file("etc/group", 0o644, "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")
			if caBundle != "" {
				w.dir("etc/ssl", 0o755, 0)
				w.dir("etc/ssl/certs", 0o755, 0)
				w.host("etc/ssl/certs/ca-certificates.crt", caBundle)
			}
			w.dir("home", 0o755, 0)
			w.dir("home/nonroot", 0o700, 65532)
			w.dir("tmp", 0o1777, 0)
		},
	}
}

// ensure returns the stand-in's image reference, importing the image unless
// podman already has it. Older tags of the same repository are removed.
func (s standIn) ensure(t *testing.T, pm *podman) string {
	t.Helper()
	sum := sha256.New()
	fmt.Fprintf(sum, "%q\n", s.changes)
	h := &hashWriter{h: sum}
	s.files(h)
	if h.err != nil {
		t.Fatalf("%s: %v", s.repo, h.err)
	}
	ref := s.repo + ":" + hex.EncodeToString(sum.Sum(nil))[:16]
	if pm.command(context.Background(), "image", "exists", ref).Run() == nil {
		return ref
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"import"}
	for _, c := range s.changes {
		args = append(args, "--change", c)
	}
	cmd := pm.command(ctx, append(args, "-", ref)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("podman import: %v", err)
	}
	tw := &tarWriter{tw: tar.NewWriter(stdin)}
	s.files(tw)
	if tw.err == nil {
		tw.err = tw.tw.Close()
	}
	stdin.Close() //nolint:errcheck // podman sees the end of its input either way; its exit status is checked below
	if err := cmd.Wait(); err != nil || tw.err != nil {
		t.Fatalf("importing %s: %v, %v\n%s", ref, err, tw.err, out.String())
	}
	t.Logf("imported the stand-in %s in %v", ref, time.Since(start).Round(100*time.Millisecond))

	tags, _ := pm.command(context.Background(), "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+s.repo).Output()
	for _, old := range strings.Fields(string(tags)) {
		if old != ref {
			pm.command(context.Background(), "rmi", old).Run() //nolint:errcheck // best effort: one still in use stays
		}
	}
	return ref
}

// hashWriter hashes what each entry is made of: its name, mode and owner,
// and its contents, or for host files their size and modification time,
// which is cheap for a toolchain's thousands of files.
type hashWriter struct {
	h   io.Writer
	err error
}

func (w *hashWriter) dir(name string, mode int64, uid int) {
	fmt.Fprintf(w.h, "dir %q %o %d\n", name, mode, uid)
}

func (w *hashWriter) file(name string, mode int64, data string) {
	fmt.Fprintf(w.h, "file %q %o %x\n", name, mode, sha256.Sum256([]byte(data)))
}

func (w *hashWriter) symlink(name, target string) {
	fmt.Fprintf(w.h, "symlink %q %q\n", name, target)
}

func (w *hashWriter) host(name, path string) {
	if w.err != nil {
		return
	}
	w.err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		fmt.Fprintf(w.h, "host %q %q %v %d %d\n", name, rel, info.Mode(), info.Size(), info.ModTime().UnixNano())
		return nil
	})
}

// tarWriter writes the entries to a tarball.
type tarWriter struct {
	tw  *tar.Writer
	err error
}

func (w *tarWriter) header(hdr *tar.Header) {
	if w.err == nil {
		w.err = w.tw.WriteHeader(hdr)
	}
}

func (w *tarWriter) dir(name string, mode int64, uid int) {
	w.header(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid})
}

func (w *tarWriter) file(name string, mode int64, data string) {
	w.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))})
	if w.err == nil {
		_, w.err = io.WriteString(w.tw, data)
	}
}

func (w *tarWriter) symlink(name, target string) {
	w.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777})
}

func (w *tarWriter) host(name, path string) {
	if w.err != nil {
		return
	}
	w.err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		hdr.Name = filepath.ToSlash(filepath.Join(name, rel))
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := w.tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w.tw, f)
		return err
	})
}

// staticBusybox returns the path of a statically linked busybox, the build
// stand-in's shell, or skips the test: a dynamically linked one would need
// a C library the stand-in lacks.
func staticBusybox(t *testing.T) string {
	t.Helper()
	candidates := []string{"/bin/busybox", "/usr/bin/busybox"}
	if p, err := exec.LookPath("busybox"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	for _, p := range candidates {
		if static, err := isStatic(p); err == nil && static {
			return p
		}
	}
	t.Skip("no statically linked busybox for the build stand-in's shell: apt-get install busybox-static (.ci/install-podman does)")
	return ""
}

func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return false, nil
		}
	}
	return true, nil
}

// hostCABundle returns the host's CA certificate bundle in Debian's place,
// which is also distroless's, or "" if it has none.
func hostCABundle() string {
	const bundle = "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(bundle); errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	return bundle
}
