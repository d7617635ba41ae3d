package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// connectorBin runs the connector binary one process per call, with its
// input given up front and stdin closed after it: what a script, or a
// runtime making a unary call, does.
type connectorBin struct {
	path string
	env  []string // added to the test's environment; later entries win
}

func newConnectorBin(t *testing.T, env ...string) *connectorBin {
	return &connectorBin{path: testsupport.BuildConnector(t), env: append([]string{"FLOW_RUNTIME_CODEC=json"}, env...)}
}

// binRun is what one run of the binary did.
type binRun struct {
	err    error // from exec: nil for exit status 0
	stdout string
	stderr string
	took   time.Duration
}

// binTimeout bounds a run: connecting gives up after 20 seconds.
const binTimeout = 45 * time.Second

// run runs the binary with args and stdin, and waits for it to exit.
func (b *connectorBin) run(t *testing.T, stdin string, args ...string) binRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), binTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.path, args...)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the connector did not exit within %s (args %q)\nstderr:\n%s", binTimeout, args, stderr.String())
	}
	return binRun{err: err, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
}

// request runs the binary as the runtime does for one request.
func (b *connectorBin) request(t *testing.T, req any) binRun {
	t.Helper()
	line, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b.run(t, string(line)+"\n")
}

func discoverRequest(cfg any) any {
	return map[string]any{"discover": map[string]any{"connectorType": "IMAGE", "config": cfg}}
}

// validateRequest proposes a binding for each table, named "schema.table"
// and keyed by /id.
func validateRequest(cfg any, tables ...string) any {
	var bindings []any
	for _, name := range tables {
		schema, table, _ := strings.Cut(name, ".")
		bindings = append(bindings, map[string]any{
			"resourceConfig": map[string]any{"namespace": schema, "stream": table},
			"collection":     map[string]any{"name": "acmeCo/test/" + table, "key": []string{"/id"}},
		})
	}
	return map[string]any{"validate": map[string]any{
		"name": "acmeCo/test/source-postgres", "connectorType": "IMAGE", "config": cfg, "bindings": bindings,
	}}
}

// openRequest opens a new capture of the tables, named "schema.table" and
// keyed by /id.
func openRequest(cfg any, tables ...string) any {
	var bindings []testsupport.Binding
	for _, name := range tables {
		schema, table, _ := strings.Cut(name, ".")
		bindings = append(bindings, testsupport.Binding{Namespace: schema, Stream: table, Key: []string{"/id"}})
	}
	return testsupport.OpenRequest(cfg, bindings, nil)
}

// lastMessage returns the message of the last line of stderr, a log entry
// in JSON or logfmt (LOG_FORMAT json or text), or the line itself.
func lastMessage(stderr string) string {
	line := lastLine(stderr)
	if strings.HasPrefix(line, "{") {
		var entry struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil {
			return entry.Msg
		}
	}
	if _, quoted, ok := strings.Cut(line, ` msg="`); ok {
		// The value runs to the first unescaped quote.
		for i := 0; i < len(quoted); i++ {
			if quoted[i] == '\\' {
				i++
			} else if quoted[i] == '"' {
				if msg, err := strconv.Unquote(`"` + quoted[:i+1]); err == nil {
					return msg
				}
				break
			}
		}
	}
	return line
}

// expectFailure checks that a run failed as a person needs it to: a
// non-zero exit, no panic, and the reason, holding every one of want, as
// the last line of stderr.
func expectFailure(t *testing.T, what string, r binRun, want ...string) {
	t.Helper()
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) || exit.ExitCode() <= 0 {
		t.Errorf("%s: want a non-zero exit status, got %v\nstderr:\n%s", what, r.err, r.stderr)
		return
	}
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("%s: stderr shows a panic:\n%s", what, r.stderr)
	}
	msg := lastMessage(r.stderr)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: the last stderr line does not say %q:\n%s", what, w, msg)
		}
	}
}
