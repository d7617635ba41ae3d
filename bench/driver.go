package main

// This file is over 500 lines because it drives every consumer the
// benchmark compares (the connector in both codecs, COPY, pg_recvlogical)
// through the same measured steps, which read best side by side.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// openRequest is what the benchmark puts in an Open request: one binding
// of one table, as the runtime would send it.
type openRequest struct {
	config    json.RawMessage
	namespace string
	stream    string
	key       []string // collection key as JSON pointers
	state     json.RawMessage
}

// captureName and the collection names mirror testsupport.OpenRequest, so
// that both codecs carry the same request.
const captureName = "acmeCo/test/source-postgres"

func (r openRequest) stateKey() string {
	return protocol.StateKey([]string{r.namespace, r.stream}, 0)
}

func (r openRequest) collection() string { return "acmeCo/test/" + r.namespace + "/" + r.stream }

// encode frames the request in codec ("proto" or "json").
func (r openRequest) encode(codec string) ([]byte, error) {
	state := r.state
	if len(state) == 0 {
		state = json.RawMessage("{}")
	}
	if codec == "json" {
		line, err := json.Marshal(testsupport.OpenRequest(r.config, []testsupport.Binding{
			{Namespace: r.namespace, Stream: r.stream, Key: r.key},
		}, state))
		return append(line, '\n'), err
	}
	resource, err := json.Marshal(map[string]string{"namespace": r.namespace, "stream": r.stream})
	if err != nil {
		return nil, err
	}
	coll := protocol.CollectionSpec{
		Name:        r.collection(),
		Key:         r.key,
		UUIDPtr:     "/_meta/uuid",
		WriteSchema: json.RawMessage(`{"type":"object"}`),
	}
	for _, k := range r.key {
		coll.Projections = append(coll.Projections, protocol.Projection{Ptr: k, Field: strings.TrimPrefix(k, "/"), IsPrimaryKey: true})
	}
	return protocol.AppendProtoOpen(nil, &protocol.OpenRequest{
		Capture: &protocol.CaptureSpec{
			Name:          captureName,
			ConnectorType: protocol.ConnectorTypeImage,
			Config:        r.config,
			Bindings: []protocol.CaptureBinding{{
				ResourceConfig: resource,
				ResourcePath:   []string{r.namespace, r.stream},
				Collection:     coll,
				StateKey:       r.stateKey(),
			}},
			IntervalSeconds: 1,
		},
		Version: "test",
		// An unsplit shard: keys and r-clocks 0 through MaxUint32.
		Range: &protocol.RangeSpec{KeyEnd: math.MaxUint32, RClockEnd: math.MaxUint32},
		State: state,
	}), nil
}

// encodeAck frames an acknowledgement of n checkpoints.
func encodeAck(codec string, n int) []byte {
	if codec == "json" {
		return fmt.Appendf(nil, `{"acknowledge":{"checkpoints":%d}}`+"\n", n)
	}
	return protocol.AppendProtoAcknowledge(nil, uint32(n))
}

// checkpoint is one checkpoint as the driver saw it.
type checkpoint struct {
	at    time.Time
	docs  int64           // documents captured before it, counted from the session's start
	state json.RawMessage // the connector state with every checkpoint so far applied
}

// session runs the connector binary through one capture session, like the
// Flow runtime with instant commits: every checkpoint is acknowledged as soon
// as it is read. It counts documents without decoding them, so that the
// driver costs far less than the connector it measures.
type session struct {
	codec   string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	profile string // where the connector writes its CPU profile, or ""

	pendingAcks atomic.Int64
	wakeAcks    chan struct{}
	done        chan struct{} // closed once the process exited and its output was read

	mu      sync.Mutex
	opened  time.Time
	docs    int64
	last    checkpoint
	changed chan struct{} // closed and replaced at every checkpoint
	readErr error
	exitErr error
	usage   *syscall.Rusage
	rss     rssSampler
}

// startSession starts the connector at path with env added to its
// environment, sends it req, and reads its output in the background. Its
// stderr goes to logPath; profile, if set, is where it writes a CPU profile.
func startSession(path, codec string, env []string, req openRequest, logPath, profile string) (*session, error) {
	frame, err := req.encode(codec)
	if err != nil {
		return nil, fmt.Errorf("encoding the Open request: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor

	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), "FLOW_RUNTIME_CODEC="+codec)
	if profile != "" {
		cmd.Env = append(cmd.Env, profileEnv+"="+profile)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = logFile
	// The connector must not outlive a benchmark that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s := &session{
		codec:    codec,
		cmd:      cmd,
		profile:  profile,
		wakeAcks: make(chan struct{}, 1),
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		last:     checkpoint{state: req.state},
	}
	if len(s.last.state) == 0 {
		s.last.state = json.RawMessage("{}")
	}
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the connector: %w", err)
	}
	s.rss.start(cmd.Process.Pid)
	go s.writeAcks()
	go func() {
		err := s.read(bufio.NewReaderSize(stdout, 1<<20))
		// Drain what remains so that the connector never blocks on a full
		// pipe while it shuts down.
		io.Copy(io.Discard, stdout) //nolint:errcheck // draining only; read has reported the stream's own error
		waitErr := cmd.Wait()
		s.rss.stop()
		s.mu.Lock()
		s.readErr, s.exitErr = err, waitErr
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.usage = ru
		}
		s.mu.Unlock()
		close(s.done)
	}()
	if _, err := s.stdin.Write(frame); err != nil {
		s.kill()
		return nil, fmt.Errorf("sending the Open request: %w", err)
	}
	return s, nil
}

// read consumes the connector's responses until its stdout closes.
func (s *session) read(r *bufio.Reader) error {
	if s.codec == "json" {
		return s.readJSON(r)
	}
	var header [4]byte
	var body []byte
	for {
		if _, err := io.ReadFull(r, header[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading a response frame: %w", err)
		}
		size := int(binary.LittleEndian.Uint32(header[:]))
		if cap(body) < size {
			body = make([]byte, size)
		}
		body = body[:size]
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("reading a %d-byte response: %w", size, err)
		}
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || typ != protowire.BytesType {
			return fmt.Errorf("malformed response frame %x", body[:min(len(body), 16)])
		}
		msg, m := protowire.ConsumeBytes(body[n:])
		if m < 0 {
			return fmt.Errorf("malformed response frame %x", body[:min(len(body), 16)])
		}
		switch num {
		case 5:
			s.handleOpened()
		case 6:
			s.mu.Lock()
			s.docs++
			s.mu.Unlock()
		case 7:
			updated, mergePatch, err := parseProtoCheckpoint(msg)
			if err != nil {
				return err
			}
			if err := s.handleCheckpoint(updated, mergePatch); err != nil {
				return err
			}
		case 8: // sourcedSchema
		default:
			return fmt.Errorf("unexpected response field %d", num)
		}
	}
}

// parseProtoCheckpoint decodes Response.Checkpoint{state: ConnectorState{updated_json, merge_patch}}.
func parseProtoCheckpoint(msg []byte) (updated []byte, mergePatch bool, err error) {
	state, err := protoField(msg, 1)
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint: %w", err)
	}
	for b := state; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, errors.New("checkpoint: malformed state")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			updated, n = protowire.ConsumeBytes(b)
		case num == 2 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			mergePatch = v != 0
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, false, errors.New("checkpoint: malformed state")
		}
		b = b[n:]
	}
	return updated, mergePatch, nil
}

// protoField returns the bytes of the length-delimited field num of msg.
func protoField(msg []byte, num protowire.Number) ([]byte, error) {
	for len(msg) > 0 {
		got, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, errors.New("malformed message")
		}
		msg = msg[n:]
		if got == num && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return nil, errors.New("malformed message")
			}
			return v, nil
		}
		if n = protowire.ConsumeFieldValue(got, typ, msg); n < 0 {
			return nil, errors.New("malformed message")
		}
		msg = msg[n:]
	}
	return nil, fmt.Errorf("field %d is missing", num)
}

func (s *session) readJSON(r *bufio.Reader) error {
	var long []byte
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err == io.EOF && len(line) == 0 {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading a response line: %w", err)
		}
		switch {
		case bytes.HasPrefix(line, []byte(`{"captured":`)):
			s.mu.Lock()
			s.docs++
			s.mu.Unlock()
		case bytes.HasPrefix(line, []byte(`{"checkpoint":`)):
			var cp struct {
				Checkpoint struct {
					State struct {
						Updated    json.RawMessage `json:"updated"`
						MergePatch bool            `json:"mergePatch"`
					} `json:"state"`
				} `json:"checkpoint"`
			}
			if err := json.Unmarshal(line, &cp); err != nil {
				return fmt.Errorf("checkpoint %q: %w", line, err)
			}
			if err := s.handleCheckpoint(cp.Checkpoint.State.Updated, cp.Checkpoint.State.MergePatch); err != nil {
				return err
			}
		case bytes.HasPrefix(line, []byte(`{"opened":`)):
			s.handleOpened()
		case bytes.HasPrefix(line, []byte(`{"sourcedSchema":`)):
		default:
			return fmt.Errorf("unexpected response %.80q", line)
		}
	}
}

func (s *session) handleOpened() {
	s.mu.Lock()
	s.opened = time.Now()
	s.mu.Unlock()
}

func (s *session) handleCheckpoint(updated []byte, mergePatch bool) error {
	at := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	base := s.last.state
	if !mergePatch {
		base = nil
	}
	state, err := testsupport.MergePatch(base, updated)
	if err != nil {
		return fmt.Errorf("applying checkpoint %s: %w", updated, err)
	}
	s.last = checkpoint{at: at, docs: s.docs, state: state}
	close(s.changed)
	s.changed = make(chan struct{})
	s.pendingAcks.Add(1)
	select {
	case s.wakeAcks <- struct{}{}:
	default:
	}
	return nil
}

// writeAcks acknowledges checkpoints on stdin without ever holding up the
// reader: acknowledgements that pile up while a write blocks go out as one.
func (s *session) writeAcks() {
	for {
		select {
		case <-s.wakeAcks:
		case <-s.done:
			return
		}
		if n := s.pendingAcks.Swap(0); n > 0 {
			if _, err := s.stdin.Write(encodeAck(s.codec, int(n))); err != nil {
				return
			}
		}
	}
}

// waitFor waits until a checkpoint satisfies done and returns it.
func (s *session) waitFor(timeout time.Duration, what string, done func(checkpoint) (bool, error)) (checkpoint, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		cp, changed := s.last, s.changed
		s.mu.Unlock()
		if !cp.at.IsZero() {
			ok, err := done(cp)
			if err != nil {
				return cp, err
			}
			if ok {
				return cp, nil
			}
		}
		select {
		case <-changed:
		case <-s.done:
			s.mu.Lock()
			err := errors.Join(s.readErr, s.exitErr)
			s.mu.Unlock()
			return cp, fmt.Errorf("the connector exited before %s (%v)", what, err)
		case <-deadline.C:
			return cp, fmt.Errorf("no checkpoint %s within %v (%d documents so far)", what, timeout, s.documents())
		}
	}
}

func (s *session) documents() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.docs
}

func (s *session) openedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

// stop ends the session as the runtime does, with SIGTERM, and returns the
// final state. The connector writes its CPU profile, if any, as it exits.
func (s *session) stop() (json.RawMessage, error) {
	var errs []error
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		errs = append(errs, errors.New("the connector did not exit within 30s of SIGTERM and was killed"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		errs = append(errs, s.readErr)
	}
	if s.exitErr != nil {
		errs = append(errs, fmt.Errorf("the connector exited with %w", s.exitErr))
	}
	return s.last.state, errors.Join(errs...)
}

// kill ends a session that is no longer needed, whatever its state.
func (s *session) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// cpuSeconds is the user and system CPU time of the exited process.
func (s *session) cpuSeconds() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usage == nil {
		return 0
	}
	return tvSeconds(s.usage.Utime) + tvSeconds(s.usage.Stime)
}

// peakRSS is the largest resident set of the exited process, in bytes.
func (s *session) peakRSS() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	peak := s.rss.peak()
	if s.usage != nil {
		peak = max(peak, s.usage.Maxrss*1024) // Linux reports KiB
	}
	return peak
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// rssSampler samples a process's resident set from /proc while it runs:
// rusage gives only the peak, and a steady figure needs the samples.
type rssSampler struct {
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples []int64 // VmRSS, bytes
	hwm     int64   // VmHWM, bytes
}

const rssInterval = 50 * time.Millisecond

func (r *rssSampler) start(pid int) {
	r.quit, r.done = make(chan struct{}), make(chan struct{})
	path := fmt.Sprintf("/proc/%d/status", pid)
	go func() {
		defer close(r.done)
		tick := time.NewTicker(rssInterval)
		defer tick.Stop()
		for {
			if rss, hwm, ok := readRSS(path); ok {
				r.mu.Lock()
				r.samples = append(r.samples, rss)
				r.hwm = max(r.hwm, hwm)
				r.mu.Unlock()
			}
			select {
			case <-r.quit:
				return
			case <-tick.C:
			}
		}
	}()
}

func (r *rssSampler) stop() {
	close(r.quit)
	<-r.done
}

func (r *rssSampler) peak() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	peak := r.hwm
	for _, s := range r.samples {
		peak = max(peak, s)
	}
	return peak
}

// median is the median sample: the resident set the process keeps while it
// works, as opposed to its peak.
func (r *rssSampler) median() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return 0
	}
	sorted := slices.Clone(r.samples)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// readRSS reads VmRSS and VmHWM from a /proc/<pid>/status file.
func readRSS(path string) (rss, hwm int64, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(data)) {
		name, value, found := strings.Cut(line, ":")
		if !found || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		if name == "VmRSS" {
			rss = kb * 1024
		} else {
			hwm = kb * 1024
		}
	}
	return rss, hwm, rss > 0
}
