package testsupport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// callTimeout bounds a unary RPC; discovery of a large schema is the slowest.
const callTimeout = 2 * time.Minute

// RaceEnv names the environment variable that makes BuildConnector build
// the connector with the race detector (PGCAPTURE_RACE=1), so that the
// end-to-end tests exercise its goroutines under it; a session whose
// connector reports a data race fails its test.
const RaceEnv = "PGCAPTURE_RACE"

// BuildConnector builds the connector (./source-postgres of this module) into
// a temporary directory on first use and returns the binary's path. StopShared
// deletes it.
func BuildConnector(t testing.TB) string {
	t.Helper()
	var flags []string
	if os.Getenv(RaceEnv) == "1" {
		flags = append(flags, "-race")
	}
	path, err := connectorProgram.build(flags...)
	if err != nil {
		t.Fatalf("building the connector: %v", err)
	}
	return path
}

// ModuleRoot finds the repository's root, the directory holding go.mod,
// walking up from the working directory (a test runs in its package's
// directory; the demo and the benchmark run from anywhere inside).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or any parent")
		}
		dir = parent
	}
}

// Connector runs the connector binary as the Flow runtime does, speaking the
// JSON codec.
type Connector struct {
	Path string
	// Args are the command's arguments. With Path "podman" and Args such as
	// {"run", "-i", "--rm", "-e", "FLOW_RUNTIME_CODEC", "source-postgres:dev"}
	// the connector runs in a container; it sees the variables of Env and
	// the driver's FLOW_RUNTIME_CODEC only if Args pass them on (-e NAME).
	Args []string
	// Env is added to the test's environment, e.g. "LOG_LEVEL=debug". It can
	// override FLOW_RUNTIME_CODEC=json, which the driver sets.
	Env []string
}

func (c *Connector) command() *exec.Cmd {
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env = append(os.Environ(), "FLOW_RUNTIME_CODEC=json")
	cmd.Env = append(cmd.Env, c.Env...) // later entries win
	// Don't outlive a test binary that dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// unaryResponses maps each unary request to its response.
var unaryResponses = map[string]string{
	"spec":     "spec",
	"discover": "discovered",
	"validate": "validated",
	"apply":    "applied",
}

// Call makes one unary RPC: it writes the request as one line, closes stdin,
// and waits for the connector to exit. If it exits non-zero, err says so and
// stderr holds its output; otherwise the response is the one JSON object it
// wrote, keyed by its type (e.g. "spec"). A successful exit without exactly
// one response line of the type matching the request fails the test, as it
// fails the runtime's RPC.
func (c *Connector) Call(t testing.TB, request any) (response map[string]json.RawMessage, stderr string, err error) {
	t.Helper()
	line, err := json.Marshal(request)
	if err != nil {
		t.Fatalf("encoding the request: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := c.command()
	cmd.Stdin = bytes.NewReader(append(line, '\n'))
	var stdout, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the connector: %v", err)
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	defer stop()
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("connector did not exit within %v, so it was killed: %w", callTimeout, err)
		}
		return nil, errOut.String(), err
	}

	response, problem := unaryResponse(line, stdout.Bytes())
	if problem != "" {
		t.Fatalf("protocol violation: %s\nstdout:\n%s\nstderr:\n%s", problem, excerpt(stdout.Bytes()), tail(errOut.String(), 20))
	}
	return response, errOut.String(), nil
}

// unaryResponse checks the output of a unary RPC that exited 0 and decodes
// it, or says what is wrong with it.
func unaryResponse(request, stdout []byte) (map[string]json.RawMessage, string) {
	if n := bytes.Count(stdout, []byte("\n")); n != 1 || !bytes.HasSuffix(stdout, []byte("\n")) {
		return nil, fmt.Sprintf("the connector wrote %d newline-terminated lines (%d bytes), want exactly one response line", n, len(stdout))
	}
	var response map[string]json.RawMessage
	if err := json.Unmarshal(stdout, &response); err != nil || response == nil {
		return nil, "the response is not a JSON object"
	}
	if len(response) != 1 {
		return nil, fmt.Sprintf("the response has %d top-level keys, want exactly one", len(response))
	}
	var got string
	for key := range response {
		got = key
	}
	var req map[string]json.RawMessage
	json.Unmarshal(request, &req) //nolint:errcheck // the request is the test's own, marshalled by Call
	for kind := range req {
		if want, ok := unaryResponses[kind]; ok && got != want {
			return nil, fmt.Sprintf("a %q request was answered with %q, want %q", kind, got, want)
		}
	}
	for _, want := range unaryResponses {
		if got == want {
			return response, ""
		}
	}
	return nil, fmt.Sprintf("%q is not a unary response", got)
}
