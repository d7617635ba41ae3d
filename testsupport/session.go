package testsupport

// This file is over 500 lines because it is the whole runtime-like driver
// of an open session (requests, acknowledgements, documents, checkpoints,
// schema checks), which tests use as one thing.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// The runtime fails a session whose connector asked for acknowledgements
	// but does not take one from its stdin within 10s.
	ackStallTimeout = 10 * time.Second
	// How long Stop waits for the connector to exit before killing it.
	sessionStopTimeout = 30 * time.Second
	// Enough to diagnose a misbehaving connector without drowning the log.
	maxViolations = 20
)

// SessionOptions customize how Open drives a session.
type SessionOptions struct {
	// AutoAck acknowledges every checkpoint as soon as it is read, like a
	// runtime whose transactions commit instantly. It has no effect unless
	// the connector asked for explicit acknowledgements.
	AutoAck bool
}

// Captured is a document the connector captured for a binding.
type Captured struct {
	Binding int
	Doc     json.RawMessage
	// Schemas is how many sourcedSchema responses preceded the document:
	// the schema in force for it is the binding's last among
	// SourcedSchemas()[:Schemas] (see SchemaInForce).
	Schemas int
}

// Checkpoint is a checkpoint and the documents it committed.
type Checkpoint struct {
	Docs       []Captured
	Updated    json.RawMessage
	MergePatch bool
}

// Session is a capture session: one connector process that was sent an Open
// request. It reads the connector's output in the background, checking it
// against the protocol as the runtime would; WaitFor and Stop fail the test
// on a violation. All methods are safe for concurrent use.
type Session struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	bindings int           // number of bindings in the Open request
	autoAck  bool          // SessionOptions.AutoAck
	wake     chan struct{} // signals the stdin writer that outbox has lines
	done     chan struct{} // closed once the process exited and its output is read

	mu           sync.Mutex
	stallTimeout time.Duration // ackStallTimeout, shortened by tests
	outbox       [][]byte      // lines waiting to be written to stdin
	writingSince time.Time     // when the line now being written began, or zero
	stallNoted   bool          // a stalled stdin was already recorded
	responses    int
	opened       map[string]any
	explicitAcks bool
	pending      []Captured
	schemas      []SourcedSchema
	killed       bool // Kill was called: a partial last line is expected
	checkpoints  []Checkpoint
	docs         []Captured
	state        json.RawMessage // initial state with every checkpoint applied
	acked        int             // checkpoints acknowledged so far
	ackedApplied int             // how many of them ackedState reflects
	ackedState   json.RawMessage
	violations   []string
	reported     int // violations already reported to the test
	stderr       bytes.Buffer
	exitErr      error
}

// Open starts a session: it starts the connector and sends it request, an
// {"open": ...} request such as OpenRequest builds. The connector is killed
// at cleanup if it is still running, and any protocol violation not yet
// reported fails the test then.
func (c *Connector) Open(t testing.TB, request any, opts SessionOptions) *Session {
	t.Helper()
	line, err := json.Marshal(request)
	if err != nil {
		t.Fatalf("encoding the Open request: %v", err)
	}
	var open struct {
		Open *struct {
			Capture struct {
				Bindings []json.RawMessage `json:"bindings"`
			} `json:"capture"`
			State json.RawMessage `json:"state"`
		} `json:"open"`
	}
	if err := json.Unmarshal(line, &open); err != nil || open.Open == nil {
		t.Fatalf(`Open: the request is not an {"open": ...} request: %s`, excerpt(line))
	}
	state := open.Open.State
	if len(state) == 0 || isNull(state) {
		state = json.RawMessage("{}")
	}

	s := &Session{
		cmd:          c.command(),
		bindings:     len(open.Open.Capture.Bindings),
		autoAck:      opts.AutoAck,
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
		stallTimeout: ackStallTimeout,
		outbox:       [][]byte{append(line, '\n')},
		state:        state,
		ackedState:   state,
	}
	s.stdin, err = s.cmd.StdinPipe()
	if err != nil {
		t.Fatalf("starting the connector: %v", err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("starting the connector: %v", err)
	}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("starting the connector: %v", err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting the connector: %v", err)
	}
	go s.run(stdout, stderr)
	go s.writeStdin()
	s.wake <- struct{}{} // the Open request is in the outbox

	t.Cleanup(func() {
		s.Kill()
		if v := s.newViolations(); len(v) > 0 {
			t.Errorf("%s", s.violationReport(v))
		}
		if stderr := s.Stderr(); strings.Contains(stderr, "WARNING: DATA RACE") {
			t.Errorf("the connector reported a data race:\n%s", stderr)
		}
	})
	return s
}

// run reads the connector's output until it exits.
func (s *Session) run(stdout, stderr io.Reader) {
	var wg sync.WaitGroup
	wg.Go(func() { s.readStdout(stdout) })
	wg.Go(func() { s.readStderr(stderr) })
	wg.Wait()
	err := s.cmd.Wait() // only after the reads: Wait closes the pipes

	s.mu.Lock()
	s.exitErr = err
	if err == nil {
		if s.opened == nil {
			s.violate("the connector exited 0 without sending opened")
		}
		if len(s.pending) > 0 {
			s.violate("the connector exited 0 with %d documents after its last checkpoint; the runtime fails a session that ends within a checkpoint", len(s.pending))
		}
	}
	s.mu.Unlock()
	close(s.done)
}

func (s *Session) readStdout(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte // a line longer than br's buffer
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			s.handleLine(line[:n-1])
		} else if n > 0 {
			s.mu.Lock()
			// SIGKILL may stop a write halfway, as it may for the runtime,
			// which discards what follows its last checkpoint anyway.
			if !s.killed {
				s.violate("the output ends with a partial line: %s", excerpt(line))
			}
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (s *Session) readStderr(r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.mu.Lock()
			s.stderr.Write(buf[:n])
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// writeStdin writes the outbox to the connector's stdin until the process
// exits or stdin is closed.
func (s *Session) writeStdin() {
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		for {
			s.mu.Lock()
			if len(s.outbox) == 0 {
				s.mu.Unlock()
				break
			}
			line := s.outbox[0]
			s.outbox = s.outbox[1:]
			s.writingSince = time.Now()
			s.mu.Unlock()

			_, err := s.stdin.Write(line)

			s.mu.Lock()
			s.writingSince = time.Time{}
			s.mu.Unlock()
			if err != nil {
				return // the connector exited or Stop closed stdin
			}
		}
	}
}

// send queues a line for the connector's stdin.
func (s *Session) send(line []byte) {
	s.outbox = append(s.outbox, line)
	select {
	case s.wake <- struct{}{}:
	default: // the writer is already signalled
	}
}

// handleLine checks and records one response.
func (s *Session) handleLine(line []byte) {
	var response map[string]json.RawMessage
	err := json.Unmarshal(line, &response)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.responses++
	if err != nil || response == nil {
		s.violate("response %d is not a JSON object: %s", s.responses, excerpt(line))
		return
	}
	if len(response) != 1 {
		s.violate("response %d has %d top-level keys, want exactly one: %s", s.responses, len(response), excerpt(line))
		return
	}
	for kind, body := range response {
		if s.opened == nil && kind != "opened" {
			s.violate("response %d is %q before opened; the first response must be opened", s.responses, kind)
		}
		var err error
		switch kind {
		case "opened":
			err = s.handleOpened(body)
		case "captured":
			err = s.handleCaptured(body)
		case "checkpoint":
			err = s.handleCheckpoint(body)
		case "sourcedSchema":
			err = s.handleSourcedSchema(body)
		default:
			err = fmt.Errorf("unknown response %q", kind)
		}
		if err != nil {
			s.violate("response %d (%s): %v: %s", s.responses, kind, err, excerpt(line))
		}
	}
}

func (s *Session) handleOpened(body json.RawMessage) error {
	if s.opened != nil {
		return errors.New("a second opened")
	}
	fields, err := knownFields(body, "explicitAcknowledgements")
	if err != nil {
		return err
	}
	if raw, ok := fields["explicitAcknowledgements"]; ok {
		if err := json.Unmarshal(raw, &s.explicitAcks); err != nil {
			return fmt.Errorf("explicitAcknowledgements: %w", err)
		}
	}
	return json.Unmarshal(body, &s.opened)
}

func (s *Session) handleCaptured(body json.RawMessage) error {
	fields, err := knownFields(body, "binding", "doc")
	if err != nil {
		return err
	}
	binding, err := s.binding(fields)
	if err != nil {
		return err
	}
	doc := fields["doc"]
	if !isObject(doc) {
		return errors.New("doc is missing or not a JSON object")
	}
	s.pending = append(s.pending, Captured{Binding: binding, Doc: doc, Schemas: len(s.schemas)})
	return nil
}

func (s *Session) handleCheckpoint(body json.RawMessage) error {
	fields, err := knownFields(body, "state")
	if err != nil {
		return err
	}
	state, ok := fields["state"]
	if !ok {
		return errors.New("no state; the runtime requires one")
	}
	if fields, err = knownFields(state, "updated", "mergePatch"); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	cp := Checkpoint{Docs: s.pending, Updated: fields["updated"]}
	if cp.Updated == nil {
		return errors.New("no state.updated; the runtime requires one")
	}
	if raw, ok := fields["mergePatch"]; ok {
		if err := json.Unmarshal(raw, &cp.MergePatch); err != nil {
			return fmt.Errorf("state.mergePatch: %w", err)
		}
	}
	if cp.MergePatch && !isObject(cp.Updated) {
		return errors.New("state.updated of a merge patch is not an object")
	}
	if s.state, err = applyCheckpoint(s.state, cp); err != nil {
		return err
	}
	s.checkpoints = append(s.checkpoints, cp)
	s.docs = append(s.docs, s.pending...)
	s.pending = nil
	s.applyAcks()
	if s.autoAck && s.explicitAcks {
		s.acknowledge(1)
	}
	return nil
}

func (s *Session) handleSourcedSchema(body json.RawMessage) error {
	// The runtime accepts the field's proto name as well as its JSON name.
	fields, err := knownFields(body, "binding", "documentSchema", "schema_json")
	if err != nil {
		return err
	}
	if _, err := s.binding(fields); err != nil {
		return err
	}
	schema := fields["documentSchema"]
	if !isObject(schema) {
		schema = fields["schema_json"]
	}
	if !isObject(schema) {
		return errors.New("documentSchema is missing or not a JSON object")
	}
	binding, _ := s.binding(fields)
	s.schemas = append(s.schemas, SourcedSchema{Binding: binding, Schema: schema})
	return nil
}

// SourcedSchema is a sourcedSchema response: a binding's schema as its
// source table now is.
type SourcedSchema struct {
	Binding int
	Schema  json.RawMessage
}

// SourcedSchemas returns every sourcedSchema response so far, in order.
func (s *Session) SourcedSchemas() []SourcedSchema {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.schemas)
}

// SchemaInForce returns the schema that was in force for a captured
// document: the binding's last sourcedSchema before it, or discovered when
// none came before it.
func (s *Session) SchemaInForce(c Captured, discovered json.RawMessage) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := min(c.Schemas, len(s.schemas)) - 1; i >= 0; i-- {
		if s.schemas[i].Binding == c.Binding {
			return s.schemas[i].Schema
		}
	}
	return discovered
}

// binding decodes and checks the binding index of a response; proto3 JSON
// leaves out binding 0.
func (s *Session) binding(fields map[string]json.RawMessage) (int, error) {
	var binding uint32
	if raw, ok := fields["binding"]; ok {
		if err := json.Unmarshal(raw, &binding); err != nil {
			return 0, fmt.Errorf("binding: %w", err)
		}
	}
	if int(binding) >= s.bindings {
		return 0, fmt.Errorf("binding %d, but the Open request has %d bindings", binding, s.bindings)
	}
	return int(binding), nil
}

// applyCheckpoint folds a checkpoint into a state: a merge patch is merged,
// anything else replaces the state (the runtime resets it to null and merges).
func applyCheckpoint(state json.RawMessage, cp Checkpoint) (json.RawMessage, error) {
	if !cp.MergePatch {
		state = nil
	}
	return MergePatch(state, cp.Updated)
}

// knownFields decodes a JSON object, rejecting keys other than known ones as
// the runtime's decoders do.
func knownFields(body json.RawMessage, known ...string) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, errors.New("not a JSON object")
	}
	for key := range fields {
		if !slices.Contains(known, key) {
			return nil, fmt.Errorf("unknown key %q", key)
		}
	}
	return fields, nil
}

// Ack sends {"acknowledge":{"checkpoints":n}}, telling the connector that its
// next n unacknowledged checkpoints are committed. n = 0 is sent as is; the
// connector must read it as 1.
func (s *Session) Ack(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acknowledge(n)
}

func (s *Session) acknowledge(n int) {
	s.send(fmt.Appendf(nil, `{"acknowledge":{"checkpoints":%d}}`+"\n", n))
	s.acked += max(n, 1)
	s.applyAcks()
}

// applyAcks brings ackedState up to date with the checkpoints acknowledged so
// far (an acknowledgement may run ahead of the checkpoints read).
func (s *Session) applyAcks() {
	for ; s.ackedApplied < min(s.acked, len(s.checkpoints)); s.ackedApplied++ {
		state, err := applyCheckpoint(s.ackedState, s.checkpoints[s.ackedApplied])
		if err != nil { // cannot happen: the same update already applied to state
			s.violate("applying checkpoint %d: %v", s.ackedApplied+1, err)
			return
		}
		s.ackedState = state
	}
}

// violate records a protocol violation. The caller holds s.mu.
func (s *Session) violate(format string, args ...any) {
	switch {
	case len(s.violations) < maxViolations:
		s.violations = append(s.violations, fmt.Sprintf(format, args...))
	case len(s.violations) == maxViolations:
		s.violations = append(s.violations, "… and more")
	}
}

// newViolations returns the violations not reported yet and marks them
// reported. A stalled stdin becomes a violation here, when it is noticed.
func (s *Session) newViolations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stallNoted && !s.writingSince.IsZero() && time.Since(s.writingSince) > s.stallTimeout {
		s.stallNoted = true
		s.violate("the connector has not read its stdin for %v; the runtime fails a session whose connector requested acknowledgements but is not processing its input", s.stallTimeout)
	}
	v := s.violations[s.reported:]
	s.reported = len(s.violations)
	return v
}

func (s *Session) violationReport(violations []string) string {
	return fmt.Sprintf("protocol violations by the connector:\n  %s\n%s", strings.Join(violations, "\n  "), s.summary())
}

// summary describes the session for a failure message.
func (s *Session) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	status := "running"
	select {
	case <-s.done:
		status = "exited 0"
		if s.exitErr != nil {
			status = "exited: " + s.exitErr.Error()
		}
	default:
	}
	return fmt.Sprintf("session: %d responses, opened %t, %d checkpoints (%d acknowledged), %d documents committed, %d pending; connector %s\nlast stderr lines:\n%s",
		s.responses, s.opened != nil, len(s.checkpoints), min(s.acked, len(s.checkpoints)), len(s.docs), len(s.pending), status, tail(s.stderr.String(), 20))
}

// WaitFor polls cond until it is true. It fails the test, naming what it
// waited for, on a protocol violation, when timeout passes, or when the
// connector exits first.
func (s *Session) WaitFor(t testing.TB, timeout time.Duration, what string, cond func(s *Session) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		exited, _ := s.Exited() // before cond: output is complete once exited
		if v := s.newViolations(); len(v) > 0 {
			t.Fatalf("waiting for %s: %s", what, s.violationReport(v))
		}
		if cond(s) {
			return
		}
		if exited {
			t.Fatalf("waiting for %s: the connector exited first\n%s", what, s.summary())
		}
		select {
		case <-deadline.C:
			t.Fatalf("waiting for %s: timed out after %v\n%s", what, timeout, s.summary())
		case <-poll.C:
		}
	}
}

// WaitOpened waits for the opened response; see Opened.
func (s *Session) WaitOpened(t testing.TB, timeout time.Duration) {
	t.Helper()
	s.WaitFor(t, timeout, "the opened response", func(s *Session) bool { return s.Opened() != nil })
}

// Opened returns the body of the opened response, e.g.
// {"explicitAcknowledgements": true}, or nil before it arrived.
func (s *Session) Opened() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.opened)
}

// Checkpoints returns the checkpoints read so far, in order.
func (s *Session) Checkpoints() []Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clip(s.checkpoints) // appends never touch what a caller sees
}

// Docs returns the documents of all checkpoints read so far, in order.
func (s *Session) Docs() []Captured {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clip(s.docs)
}

// Pending returns the documents read after the last checkpoint.
func (s *Session) Pending() []Captured {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clip(s.pending)
}

// State returns the Open request's state with every checkpoint read so far
// applied: what the runtime would commit if every checkpoint committed.
func (s *Session) State() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// AckedState returns the Open request's state with only the acknowledged
// checkpoints applied: what a new session may safely be opened with.
func (s *Session) AckedState() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ackedState
}

// Stderr returns everything the connector has written to stderr.
func (s *Session) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Exited reports whether the connector has exited, and if so its exit error
// (nil for status 0).
func (s *Session) Exited() (bool, error) {
	select {
	case <-s.done:
		return true, s.exitErr // written before done was closed
	default:
		return false, nil
	}
}

// Kill kills the connector, as a crash would, and waits for it to exit.
func (s *Session) Kill() {
	s.mu.Lock()
	s.killed = true
	s.mu.Unlock()
	s.cmd.Process.Signal(syscall.SIGKILL) // fails only if it already exited
	<-s.done
}

// Stop ends the session as the runtime does: it closes stdin and sends
// SIGTERM, then waits for the connector to exit (killing it after 30s, which
// fails the test). It returns the exit error, nil for status 0, and fails the
// test on protocol violations not reported yet.
func (s *Session) Stop(t testing.TB) error {
	t.Helper()
	s.stdin.Close() //nolint:errcheck // closing stdin only signals the end; the exit status is what Stop reports
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(sessionStopTimeout):
		s.Kill()
		t.Errorf("the connector did not exit within %v of SIGTERM, so it was killed\n%s", sessionStopTimeout, s.summary())
	}
	if v := s.newViolations(); len(v) > 0 {
		t.Errorf("%s", s.violationReport(v))
	}
	_, err := s.Exited()
	return err
}
