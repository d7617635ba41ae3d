package testsupport

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests drive scripted stand-ins for the connector: they check the
// driver itself, including its protocol checks, which need a connector that
// misbehaves on purpose. They don't run in parallel, so that no other test
// forks while a script is open for writing (which makes exec fail with
// ETXTBSY).

// scriptedConnector returns a Connector running a /bin/sh script.
func scriptedConnector(t *testing.T, script string) *Connector {
	t.Helper()
	path := filepath.Join(t.TempDir(), "connector")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Connector{Path: path}
}

// recordingTB records test failures instead of failing the test.
type recordingTB struct {
	testing.TB
	mu       sync.Mutex
	failures []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// failures runs fn, returning the failures it reported instead of failing t.
func failures(t *testing.T, fn func(tb testing.TB)) []string {
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(rec)
	}()
	<-done
	return rec.failures
}

var oneBinding = []Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}

func TestSessionCheckpointsAndState(t *testing.T) {
	c := scriptedConnector(t, `
read -r open
echo "$open" >&2
echo '{"opened":{"explicitAcknowledgements":true}}'
echo '{"captured":{"doc":{"id":1}}}'
echo '{"captured":{"binding":1,"doc":{"id":2}}}'
echo '{"checkpoint":{"state":{"updated":{"cursor":"A","tables":{"t1":{"done":false}}},"mergePatch":true}}}'
echo '{"sourcedSchema":{"binding":1,"documentSchema":{"type":"object"}}}'
echo '{"captured":{"doc":{"id":3}}}'
echo '{"checkpoint":{"state":{"updated":{"cursor":null,"tables":{"t1":{"done":true}}},"mergePatch":true}}}'
echo '{"captured":{"doc":{"id":4}}}'
trap '' TERM
while read -r line; do echo "got $line" >&2; done
echo '{"checkpoint":{"state":{"updated":{"replaced":true}}}}'
`)
	bindings := []Binding{{Namespace: "public", Stream: "t1"}, {Namespace: "public", Stream: "t2"}}
	s := c.Open(t, OpenRequest(map[string]any{}, bindings, json.RawMessage(`{"old":1}`)), SessionOptions{})
	s.WaitOpened(t, 10*time.Second)
	if got := s.Opened(); len(got) != 1 || got["explicitAcknowledgements"] != true {
		t.Errorf("Opened() = %v", got)
	}
	s.WaitFor(t, 10*time.Second, "two checkpoints and a pending document", func(s *Session) bool {
		return len(s.Checkpoints()) == 2 && len(s.Pending()) == 1
	})
	if !strings.Contains(s.Stderr(), `"stateKey":"public%2Ft2"`) {
		t.Errorf("the connector did not receive the Open request on one line; its stderr:\n%s", s.Stderr())
	}

	cps := s.Checkpoints()
	assertDocs(t, "checkpoint 1", cps[0].Docs, `0:{"id":1}`, `1:{"id":2}`)
	assertDocs(t, "checkpoint 2", cps[1].Docs, `0:{"id":3}`)
	assertDocs(t, "Docs()", s.Docs(), `0:{"id":1}`, `1:{"id":2}`, `0:{"id":3}`)
	assertDocs(t, "Pending()", s.Pending(), `0:{"id":4}`)
	if !cps[0].MergePatch || string(cps[0].Updated) != `{"cursor":"A","tables":{"t1":{"done":false}}}` {
		t.Errorf("checkpoint 1 = %+v", cps[0])
	}
	assertJSON(t, "State()", s.State(), `{"old":1,"tables":{"t1":{"done":true}}}`)
	assertJSON(t, "AckedState() before any ack", s.AckedState(), `{"old":1}`)

	s.Ack(1)
	assertJSON(t, "AckedState() after one ack", s.AckedState(), `{"cursor":"A","old":1,"tables":{"t1":{"done":false}}}`)
	s.Ack(1)
	assertJSON(t, "AckedState() after two acks", s.AckedState(), `{"old":1,"tables":{"t1":{"done":true}}}`)
	s.WaitFor(t, 10*time.Second, "the acknowledgements to reach the connector", func(s *Session) bool {
		return strings.Count(s.Stderr(), `got {"acknowledge":{"checkpoints":1}}`) == 2
	})

	if err := s.Stop(t); err != nil {
		t.Fatalf("Stop: %v\n%s", err, s.Stderr())
	}
	if exited, err := s.Exited(); !exited || err != nil {
		t.Errorf("Exited() = %t, %v after Stop", exited, err)
	}
	cps = s.Checkpoints()
	if len(cps) != 3 || cps[2].MergePatch {
		t.Fatalf("after Stop: %d checkpoints, want 3 with a final replacement", len(cps))
	}
	assertDocs(t, "the final checkpoint", cps[2].Docs, `0:{"id":4}`)
	assertJSON(t, "State() after a replacing checkpoint", s.State(), `{"replaced":true}`)
}

func TestSessionAutoAck(t *testing.T) {
	for _, tc := range []struct {
		opened      string
		wantAcks    int
		wantAckedTo string
	}{
		{`{"opened":{"explicitAcknowledgements":true}}`, 2, `{"a":1,"b":2}`},
		// The runtime only acknowledges when asked to.
		{`{"opened":{}}`, 0, `{}`},
	} {
		c := scriptedConnector(t, `
read -r open
echo '`+tc.opened+`'
echo '{"checkpoint":{"state":{"updated":{"a":1},"mergePatch":true}}}'
echo '{"checkpoint":{"state":{"updated":{"b":2},"mergePatch":true}}}'
trap '' TERM
n=0
while read -r line; do n=$((n+1)); done
echo "acks=$n" >&2
`)
		s := c.Open(t, OpenRequest(nil, oneBinding, nil), SessionOptions{AutoAck: true})
		s.WaitFor(t, 10*time.Second, "two checkpoints", func(s *Session) bool { return len(s.Checkpoints()) == 2 })
		assertJSON(t, "AckedState()", s.AckedState(), tc.wantAckedTo)
		if err := s.Stop(t); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if want := fmt.Sprintf("acks=%d", tc.wantAcks); !strings.Contains(s.Stderr(), want) {
			t.Errorf("with %s the connector's stderr is %q, want %q", tc.opened, s.Stderr(), want)
		}
	}
}

func TestSessionViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string // after reading the Open request
		want   string
	}{
		{"opened is not first", `echo '{"captured":{"doc":{}}}'`, `response 1 is "captured" before opened`},
		{"not JSON", `echo 'hello'`, "response 1 is not a JSON object"},
		{"blank line", `echo`, "response 1 is not a JSON object"},
		{"two keys", `echo '{"opened":{},"checkpoint":{}}'`, "response 1 has 2 top-level keys"},
		{"unknown response", `echo '{"opened":{}}'; echo '{"captures":{}}'`, `unknown response "captures"`},
		{"unary response", `echo '{"opened":{}}'; echo '{"spec":{}}'`, `unknown response "spec"`},
		{"second opened", `echo '{"opened":{}}'; echo '{"opened":{}}'`, "a second opened"},
		{"unknown opened key", `echo '{"opened":{"explicitAcks":true}}'`, `unknown key "explicitAcks"`},
		{"unknown captured key", `echo '{"opened":{}}'; echo '{"captured":{"doc":{},"Binding":0}}'`, `unknown key "Binding"`},
		{"binding out of range", `echo '{"opened":{}}'; echo '{"captured":{"binding":1,"doc":{}}}'`, "binding 1, but the Open request has 1 bindings"},
		{"negative binding", `echo '{"opened":{}}'; echo '{"captured":{"binding":-1,"doc":{}}}'`, "binding: json"},
		{"doc not an object", `echo '{"opened":{}}'; echo '{"captured":{"doc":[1]}}'`, "doc is missing or not a JSON object"},
		{"no doc", `echo '{"opened":{}}'; echo '{"captured":{}}'`, "doc is missing or not a JSON object"},
		{"checkpoint without state", `echo '{"opened":{}}'; echo '{"checkpoint":{}}'`, "no state"},
		{"checkpoint without updated", `echo '{"opened":{}}'; echo '{"checkpoint":{"state":{"mergePatch":true}}}'`, "no state.updated"},
		{"merge patch not an object", `echo '{"opened":{}}'; echo '{"checkpoint":{"state":{"updated":[1],"mergePatch":true}}}'`, "is not an object"},
		{"sourced schema out of range", `echo '{"opened":{}}'; echo '{"sourcedSchema":{"binding":3,"documentSchema":{}}}'`, "binding 3"},
		{"partial line", `echo '{"opened":{}}'; printf '{"captured"'`, "partial line"},
		{"exit 0 within a checkpoint", `echo '{"opened":{}}'; echo '{"captured":{"doc":{}}}'; exit 0`, "exited 0 with 1 documents after its last checkpoint"},
		{"exit 0 without opened", `exit 0`, "exited 0 without sending opened"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := scriptedConnector(t, "read -r open\n"+tc.script+"\nexit 1\n")
			s := c.Open(t, OpenRequest(nil, oneBinding, nil), SessionOptions{})
			got := failures(t, func(tb testing.TB) {
				s.WaitFor(tb, 10*time.Second, "something that never happens", func(*Session) bool { return false })
			})
			if len(got) != 1 || !strings.Contains(got[0], tc.want) || !strings.Contains(got[0], "protocol violations") {
				t.Errorf("WaitFor failures = %q, want a protocol violation containing %q", got, tc.want)
			}
		})
	}
}

func TestSessionWaitForFailures(t *testing.T) {
	for _, tc := range []struct {
		name, logLine, then, want string
	}{
		{"timeout", "some log line", "exec sleep 30", "timed out after 100ms"},
		{"exit first", "fatal: no such table", "exit 3", "the connector exited first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := scriptedConnector(t, fmt.Sprintf("read -r open\necho '{\"opened\":{}}'\necho '%s' >&2\n%s\n", tc.logLine, tc.then))
			s := c.Open(t, OpenRequest(nil, oneBinding, nil), SessionOptions{})
			s.WaitOpened(t, 10*time.Second)
			got := failures(t, func(tb testing.TB) {
				s.WaitFor(tb, 100*time.Millisecond, "the thing", func(*Session) bool { return false })
			})
			if len(got) != 1 || !strings.Contains(got[0], "waiting for the thing: "+tc.want) {
				t.Fatalf("WaitFor failures = %q, want one saying %q", got, tc.want)
			}
			// The failure shows the connector's last words.
			if !strings.Contains(got[0], "last stderr lines:\n") || !strings.Contains(got[0], tc.logLine) {
				t.Errorf("the failure does not show the connector's stderr: %s", got[0])
			}
		})
	}
}

func TestSessionStalledStdin(t *testing.T) {
	// The connector never reads again after the Open request, so the pipe
	// fills up with acknowledgements.
	c := scriptedConnector(t, `read -r open; echo '{"opened":{"explicitAcknowledgements":true}}'; exec sleep 30`)
	s := c.Open(t, OpenRequest(nil, oneBinding, nil), SessionOptions{})
	s.WaitOpened(t, 10*time.Second)
	s.mu.Lock()
	s.stallTimeout = 100 * time.Millisecond
	s.mu.Unlock()
	for range 5000 { // well over a 64 KiB pipe buffer
		s.Ack(1)
	}
	got := failures(t, func(tb testing.TB) {
		s.WaitFor(tb, 10*time.Second, "a stall", func(*Session) bool { return false })
	})
	if len(got) != 1 || !strings.Contains(got[0], "has not read its stdin") {
		t.Errorf("WaitFor failures = %q, want a stalled-stdin violation", got)
	}
}

func TestSessionKill(t *testing.T) {
	c := scriptedConnector(t, `read -r open; echo '{"opened":{}}'; exec sleep 30`)
	s := c.Open(t, OpenRequest(nil, oneBinding, nil), SessionOptions{})
	s.WaitOpened(t, 10*time.Second)
	if exited, _ := s.Exited(); exited {
		t.Fatal("Exited() before Kill")
	}
	s.Kill()
	if exited, err := s.Exited(); !exited || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Exited() = %t, %v after Kill, want an exit by SIGKILL", exited, err)
	}
}

func TestCall(t *testing.T) {
	c := scriptedConnector(t, `
read -r request
echo "request: $request" >&2
echo '{"spec":{"protocol":3032023}}'
`)
	response, stderr, err := c.Call(t, map[string]any{"spec": map[string]any{}})
	if err != nil {
		t.Fatalf("Call: %v\n%s", err, stderr)
	}
	if string(response["spec"]) != `{"protocol":3032023}` || len(response) != 1 {
		t.Errorf("response = %s", response)
	}
	if !strings.Contains(stderr, `request: {"spec":{}}`) {
		t.Errorf("stderr = %q, want the request echoed", stderr)
	}

	failing := scriptedConnector(t, `echo 'the connector cannot run' >&2; exit 1`)
	response, stderr, err = failing.Call(t, map[string]any{"discover": map[string]any{}})
	if err == nil || response != nil || !strings.Contains(stderr, "the connector cannot run") {
		t.Errorf("Call of a failing connector = %s, %q, %v", response, stderr, err)
	}

	wrong := scriptedConnector(t, `read -r request; echo '{"spec":{}}'`)
	got := failures(t, func(tb testing.TB) { wrong.Call(tb, map[string]any{"validate": map[string]any{}}) }) //nolint:errcheck // the failures reported through tb are the result
	if len(got) != 1 || !strings.Contains(got[0], `a "validate" request was answered with "spec"`) {
		t.Errorf("Call failures = %q, want a wrong response type", got)
	}

	env := scriptedConnector(t, `read -r request; echo "codec=$FLOW_RUNTIME_CODEC level=$LOG_LEVEL" >&2; echo '{"applied":{}}'`)
	env.Env = []string{"LOG_LEVEL=debug"}
	if _, stderr, err := env.Call(t, map[string]any{"apply": map[string]any{}}); err != nil || !strings.Contains(stderr, "codec=json level=debug") {
		t.Errorf("Call with Env: %v, stderr %q, want codec=json level=debug", err, stderr)
	}
}

func TestUnaryResponse(t *testing.T) {
	for _, tc := range []struct {
		request, stdout, want string // want: the problem, or "" for none
	}{
		{`{"spec":{}}`, "{\"spec\":{\"protocol\":3032023}}\n", ""},
		{`{"discover":{}}`, "{\"discovered\":{}}\n", ""},
		{`{"validate":{}}`, "{\"validated\":{\"bindings\":[]}}\n", ""},
		{`{"apply":{}}`, "{\"applied\":{}}\n", ""},
		{`{"spec":{}}`, "", "0 newline-terminated lines"},
		{`{"spec":{}}`, "{\"spec\":{}}", "0 newline-terminated lines"},
		{`{"spec":{}}`, "{\"spec\":{}}\n{\"spec\":{}}\n", "2 newline-terminated lines"},
		{`{"spec":{}}`, "spec\n", "not a JSON object"},
		{`{"spec":{}}`, "{\"spec\":{},\"applied\":{}}\n", "2 top-level keys"},
		{`{"discover":{}}`, "{\"spec\":{}}\n", `a "discover" request was answered with "spec", want "discovered"`},
		{`{"open":{}}`, "{\"opened\":{}}\n", `"opened" is not a unary response`},
	} {
		_, problem := unaryResponse([]byte(tc.request), []byte(tc.stdout))
		if (tc.want == "") != (problem == "") || !strings.Contains(problem, tc.want) {
			t.Errorf("unaryResponse(%s, %q) = %q, want %q", tc.request, tc.stdout, problem, tc.want)
		}
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if filepath.Join(root, "testsupport") != wd {
		t.Errorf("ModuleRoot() = %s, from %s", root, wd)
	}
}

// assertDocs compares documents, written as "binding:doc".
func assertDocs(t *testing.T, what string, docs []Captured, want ...string) {
	t.Helper()
	got := make([]string, len(docs))
	for i, d := range docs {
		got[i] = fmt.Sprintf("%d:%s", d.Binding, d.Doc)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func assertJSON(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func BenchmarkSessionHandleLine(b *testing.B) {
	for _, bench := range []struct {
		name string
		line string
	}{
		{"captured", `{"captured":{"binding":1,"doc":{"_meta":{"op":"u","source":{"ts_ms":1755800000123,"schema":"public","table":"users","loc":[24377248,24377320,24377512],"txid":771}},"id":1,"name":"alicia","email":"alicia@example.com","balance":"1234.50"}}}`},
		{"checkpoint", `{"checkpoint":{"state":{"updated":{"cursor":"0/173F8C0","bindingStateV1":{"public%2Fusers":{"mode":"Active","backfilled":2}}},"mergePatch":true}}}`},
	} {
		b.Run(bench.name, func(b *testing.B) {
			s := &Session{bindings: 2, opened: map[string]any{}, state: json.RawMessage(`{"cursor":"0/1","bindingStateV1":{"public%2Fusers":{"mode":"Backfill","backfilled":1}}}`)}
			s.ackedState = s.state
			line := []byte(bench.line)
			b.ReportAllocs()
			for b.Loop() {
				s.handleLine(line)
				if len(s.pending) > 10000 || len(s.checkpoints) > 10000 {
					s.pending, s.checkpoints, s.docs = nil, nil, nil
				}
			}
			if len(s.violations) > 0 {
				b.Fatal(s.violations)
			}
		})
	}
}
