package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// podman runs the podman command. Every container the test starts carries
// the label of this run, so that cleanup finds each one, even one whose
// podman client was killed, which leaves its container running.
type podman struct {
	path  string
	label string // e.g. pgcapture.image-test=4f2a9c01
	run   string // this run's identifier
}

// newPodman finds podman, or skips the test, and removes the run's
// containers at cleanup.
func newPodman(t *testing.T) *podman {
	t.Helper()
	path, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman is not installed: apt-get install podman runc busybox-static (.ci/install-podman does) to build and run the image")
	}
	id := make([]byte, 4)
	rand.Read(id)
	pm := &podman{path: path, run: hex.EncodeToString(id)}
	pm.label = "pgcapture.image-test=" + pm.run
	t.Cleanup(func() {
		ids, err := pm.command(context.Background(), "ps", "--all", "--quiet", "--filter", "label="+pm.label).Output()
		if err != nil {
			t.Errorf("listing the test's containers: %v", err)
			return
		}
		if ids := strings.Fields(string(ids)); len(ids) > 0 {
			if out, err := pm.command(context.Background(), append([]string{"rm", "--force", "--time", "0"}, ids...)...).CombinedOutput(); err != nil {
				t.Errorf("removing the test's containers %v: %v\n%s", ids, err, out)
			}
		}
	})
	return pm
}

func (pm *podman) command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, pm.path, args...)
}

// output runs podman and returns its standard output, failing the test with
// its output if it fails.
func (pm *podman) output(t *testing.T, timeout time.Duration, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := pm.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s\n%s%s", strings.Join(args, " "), err, tailLines(string(out), 20), tailLines(stderr.String(), 20), podmanHint(stderr.String()))
	}
	return out
}

// podmanHint explains a failure a sandbox commonly causes.
func podmanHint(output string) string {
	if strings.Contains(output, "setting rlimit") {
		return "\n(podman, as root, raises the containers' open-file and process limits above what this machine allows: " +
			"set default_ulimits = [] in a containers.conf, as .ci/install-podman does)"
	}
	return ""
}

// imageTestVersion is the VERSION build argument of the test's image.
const imageTestVersion = "v0.0.0-image-test"

// runArgs are the arguments of podman run for the image: interactive (the
// protocol is on stdin and stdout), removed at exit, labelled for cleanup.
func (pm *podman) runArgs(image string, options ...string) []string {
	args := append([]string{"run", "--interactive", "--rm", "--label", pm.label}, options...)
	return append(args, image)
}

// build builds the repository's Dockerfile on the given base images, without
// network: go mod download reads the host's module cache. It returns the
// image's reference; cleanup removes the image.
func (pm *podman) build(t *testing.T, goImage, baseImage string) string {
	t.Helper()
	root, err := testsupport.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Fill the host's module cache with everything the build's go mod
	// download asks for (a go build needs less), from the host's GOPROXY.
	if out, err := goCommand(root, "mod", "download").CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	modcache, err := goCommand(root, "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	proxy := filepath.Join(strings.TrimSpace(string(modcache)), "cache", "download")

	ref := "localhost/source-postgres-test:" + pm.run
	start := time.Now()
	pm.output(t, 10*time.Minute, "build",
		// No intermediate images to pile up: the Dockerfile's cache mount
		// is what makes a rebuild fast.
		"--layers=false", "--pull=never", "--network=none",
		"--build-arg", "GO_IMAGE="+goImage, "--build-arg", "BASE_IMAGE="+baseImage,
		"--build-arg", "VERSION="+imageTestVersion,
		"--volume", proxy+":/goproxy:ro",
		"--tag", ref, root)
	t.Cleanup(func() { pm.command(context.Background(), "rmi", "--force", ref).Run() }) //nolint:errcheck // best-effort cleanup of a throwaway image
	size := pm.output(t, time.Minute, "image", "inspect", "--format", "{{.Size}}", ref)
	t.Logf("built %s in %v: %s bytes", ref, time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(string(size)))
	return ref
}

func goCommand(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	return cmd
}

// imageConfig is what flow-connector-init reads of the image's inspection,
// which the runtime hands it: the command to run, and labels and
// environment for the codec.
type imageConfig struct {
	User       string
	Env        []string
	Entrypoint []string
	Cmd        []string
	Labels     map[string]string
}

// labelOrEnv returns a label or, failing that, an environment variable of
// the image, as flow-connector-init looks up FLOW_RUNTIME_CODEC.
func (c imageConfig) labelOrEnv(name string) string {
	if v, ok := c.Labels[name]; ok {
		return v
	}
	return c.env(name)
}

func (c imageConfig) env(name string) string {
	for _, kv := range c.Env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestImage builds the image from the Dockerfile, on local stand-ins for its
// base images, and runs the connector in it as the Flow runtime does: the
// configuration the runtime and flow-connector-init read, the start-up Spec
// probe in the image's codec, then discovery, bad input and a capture
// against a real cluster over the host's network.
func TestImage(t *testing.T) {
	pm := newPodman(t)
	busybox := staticBusybox(t)
	goroot, err := goCommand(".", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	goImage := goStandIn(strings.TrimSpace(string(goroot)), busybox).ensure(t, pm)
	baseImage := baseStandIn(hostCABundle()).ensure(t, pm)
	image := pm.build(t, goImage, baseImage)

	var inspected []struct{ Config imageConfig }
	if err := json.Unmarshal(pm.output(t, time.Minute, "image", "inspect", image), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v (%d images)", err, len(inspected))
	}
	cfg := inspected[0].Config
	imageCodec := protocol.Proto // the runtime's choice: JSON only if asked
	if cfg.labelOrEnv("FLOW_RUNTIME_CODEC") == "json" {
		imageCodec = protocol.JSON
	}

	t.Run("configuration", func(t *testing.T) {
		// The runtime takes an image for a capture or a materialization by
		// this label (without it, by the image's name).
		if got := cfg.Labels["FLOW_RUNTIME_PROTOCOL"]; got != "capture" {
			t.Errorf("label FLOW_RUNTIME_PROTOCOL is %q, want capture", got)
		}
		if connectorCodec, err := protocol.CodecFromEnv(cfg.env("FLOW_RUNTIME_CODEC")); err != nil || connectorCodec != imageCodec {
			t.Errorf("flow-connector-init speaks %v to the image (labels %v), but the connector's environment %v makes it speak %v (%v)",
				imageCodec, cfg.Labels, cfg.Env, connectorCodec, err)
		}
		uid, gid, _ := strings.Cut(cfg.User, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("user %q, want a numeric user other than root", cfg.User)
		}
		if _, err := strconv.Atoi(gid); gid != "" && err != nil {
			t.Errorf("user %q has a group name, want a number", cfg.User)
		}
		// flow-connector-init runs the entrypoint alone, where docker run
		// would append the command: with both, the two would differ.
		if len(cfg.Entrypoint) == 0 || len(cfg.Cmd) != 0 {
			t.Errorf("entrypoint %q and command %q: want an entrypoint and no command", cfg.Entrypoint, cfg.Cmd)
		}
	})

	t.Run("spec probe", func(t *testing.T) {
		// What flow-connector-init asks first, in the image's codec: an empty
		// Spec request, answered with protocol 3032023.
		request := []byte{0x02, 0, 0, 0, 0x0A, 0x00}
		if imageCodec == protocol.JSON {
			request = []byte(`{"spec":{}}` + "\n")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := pm.command(ctx, pm.runArgs(image, "--network=none")...)
		cmd.Stdin = bytes.NewReader(request)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("spec: %v\n%s%s", err, stderr.String(), podmanHint(stderr.String()))
		}
		switch imageCodec {
		case protocol.Proto:
			if len(out) < 16 || int(binary.LittleEndian.Uint32(out)) != len(out)-4 {
				t.Fatalf("not exactly one length-prefixed frame: % x", out[:min(len(out), 16)])
			}
			// Response field 1 (spec), then Spec field 1 (protocol) = 3032023.
			if out[4] != 0x0A || !bytes.Contains(out[4:16], []byte{0x08, 0xD7, 0x87, 0xB9, 0x01}) {
				t.Errorf("the response does not carry protocol 3032023: % x", out[:16])
			}
		case protocol.JSON:
			if bytes.Count(out, []byte("\n")) != 1 || !bytes.Contains(out, []byte(`"protocol":3032023`)) {
				t.Errorf("want one spec line with protocol 3032023, got %s", out)
			}
		}
	})

	// The driver speaks JSON; the runtime's logging settings pass through.
	connector := &testsupport.Connector{
		Path: pm.path,
		Args: pm.runArgs(image, "--network=host",
			"--env", "FLOW_RUNTIME_CODEC", "--env", "LOG_FORMAT", "--env", "LOG_LEVEL"),
		Env: []string{"LOG_FORMAT=json", "LOG_LEVEL=info"},
	}

	t.Run("version", func(t *testing.T) {
		out := pm.output(t, time.Minute, append(pm.runArgs(image), "--version")...)
		if got := strings.TrimSpace(string(out)); !strings.Contains(got, imageTestVersion) {
			t.Errorf("--version in the image printed %q, want the VERSION build argument %q", got, imageTestVersion)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		_, stderr, err := connector.Call(t, map[string]any{"discover": map[string]any{
			"connectorType": "IMAGE", "config": map[string]any{"database": "app", "user": "flow_capture"}}})
		if err == nil {
			t.Fatalf("a config without an address was accepted")
		}
		if last := lastLine(stderr); !strings.Contains(last, "address") || strings.Contains(stderr, "panic") {
			t.Errorf("the last stderr line should name the missing address, without a panic: %s", stderr)
		}
	})

	t.Run("capture", func(t *testing.T) {
		f := newFixture(t)
		f.connector = connector
		f.exec(t, `CREATE TABLE public.users (id int PRIMARY KEY, name text)`)
		f.exec(t, `INSERT INTO public.users VALUES (1, 'alice'), (2, 'bob')`)
		if got := f.discover(t)["public/users"]; strings.Join(got.Key, ",") != "/id" {
			t.Fatalf("discovered public/users with key %v, want [/id]", got.Key)
		}

		bindings := []testsupport.Binding{{Namespace: "public", Stream: "users", Key: []string{"/id"}}}
		key := protocol.StateKey([]string{"public", "users"}, 0)
		s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
		s.WaitFor(t, time.Minute, "the backfill", func(s *testsupport.Session) bool {
			return streamMode(t, s.State(), key) == "Active"
		})
		f.exec(t, `INSERT INTO public.users VALUES (3, 'carol')`)
		s.WaitFor(t, 30*time.Second, "the streamed insert", func(s *testsupport.Session) bool {
			return len(docsOf(s, 0)) == 3
		})
		// Acknowledgements reach the connector through the container's stdin,
		// and it confirms them to PostgreSQL.
		cursor := cursorOf(t, s.State())
		waitUntil(t, 30*time.Second, fmt.Sprintf("the slot to confirm the acknowledged cursor %s", cursor), func() bool {
			return f.confirmedFlush(t) >= cursor
		})
		// The runtime stops a session with SIGTERM, which podman passes on.
		if err := s.Stop(t); err != nil {
			t.Errorf("the connector exited with %v after SIGTERM, want status 0\n%s", err, tailLines(s.Stderr(), 10))
		}
		reduceAgainstTable(t, f, docsOf(s, 0), []string{"/id"},
			`SELECT json_build_array(id)::text, json_build_object('id', id, 'name', name)::text FROM public.users`)
	})
}
