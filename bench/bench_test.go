package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"pgcapture/protocol"
)

var codecs = []string{"proto", "json"}

func protocolCodec(t *testing.T, codec string) protocol.Codec {
	t.Helper()
	c, err := protocol.CodecFromEnv(codec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The driver encodes JSON requests by hand and proto ones with the protocol
// package; the connector's own decoder must read the same Open request from
// either codec, and the acknowledgements.
func TestRequestsDecodeAsTheConnectorReadsThem(t *testing.T) {
	req := openRequest{
		config:    json.RawMessage(`{"address":"127.0.0.1:5432","database":"bench","advanced":{"slotName":"bench_proto"}}`),
		namespace: "public",
		stream:    "bench",
		key:       []string{"/id"},
		state:     json.RawMessage(`{"cursor":"0/1A2B3C4"}`),
	}
	var opens []*protocol.OpenRequest
	for _, codec := range codecs {
		frame, err := req.encode(codec)
		if err != nil {
			t.Fatal(err)
		}
		frame = append(frame, encodeAck(codec, 3)...)
		r := protocol.NewReader(bytes.NewReader(frame), protocolCodec(t, codec))
		open, err := r.Read()
		if err != nil {
			t.Fatalf("%s: reading the Open request: %v", codec, err)
		}
		if open.Open == nil {
			t.Fatalf("%s: the request is not an Open request: %+v", codec, open)
		}
		ack, err := r.Read()
		if err != nil {
			t.Fatalf("%s: reading the acknowledgement: %v", codec, err)
		}
		if ack.Acknowledge == nil || ack.Acknowledge.Checkpoints != 3 {
			t.Errorf("%s: the acknowledgement reads as %+v, want 3 checkpoints", codec, ack.Acknowledge)
		}
		opens = append(opens, open.Open)
	}
	proto, fromJSON := opens[0], opens[1]
	if !reflect.DeepEqual(proto, fromJSON) {
		t.Errorf("the codecs disagree:\nproto: %+v\njson:  %+v", proto, fromJSON)
	}
	b := proto.Capture.Bindings
	if len(b) != 1 || b[0].StateKey != "public%2Fbench" || !reflect.DeepEqual(b[0].ResourcePath, []string{"public", "bench"}) ||
		!reflect.DeepEqual(b[0].Collection.Key, []string{"/id"}) {
		t.Errorf("binding %+v, want public.bench keyed by /id under state key public%%2Fbench", b)
	}
	if string(proto.State) != string(req.state) || string(proto.Capture.Config) != string(req.config) {
		t.Errorf("state %s and config %s, want %s and %s", proto.State, proto.Capture.Config, req.state, req.config)
	}
}

// The driver counts what the connector's own writer writes: documents up
// to each checkpoint, the merged state, and one acknowledgement owed per
// checkpoint.
func TestSessionReadsTheConnectorsResponses(t *testing.T) {
	for _, codec := range codecs {
		t.Run(codec, func(t *testing.T) {
			var out bytes.Buffer
			w := protocol.NewWriter(&out, protocolCodec(t, codec))
			doc := []byte(`{"_meta":{"op":"c"},"id":1}`)
			steps := []error{
				w.WriteOpened(true),
				w.WriteSourcedSchema(0, []byte(`{"type":"object"}`)),
				w.WriteCaptured(0, doc), w.WriteCaptured(0, doc), w.WriteCaptured(0, doc),
				w.WriteCheckpoint([]byte(`{"cursor":"0/1","streams":{"k":{"mode":"Backfill"}}}`), true),
				w.WriteCaptured(0, doc), w.WriteCaptured(0, doc),
				w.WriteCheckpoint([]byte(`{"cursor":"0/2","streams":{"k":{"mode":"Active"}}}`), true),
			}
			for _, err := range steps {
				if err != nil {
					t.Fatal(err)
				}
			}

			s := &session{
				codec:    codec,
				changed:  make(chan struct{}),
				wakeAcks: make(chan struct{}, 1),
				last:     checkpoint{state: json.RawMessage(`{"old":true}`)},
			}
			if err := s.read(bufio.NewReader(&out)); err != nil {
				t.Fatal(err)
			}
			if s.opened.IsZero() {
				t.Error("opened was not seen")
			}
			if s.last.docs != 5 || s.docs != 5 {
				t.Errorf("%d documents at the last checkpoint and %d in all, want 5 and 5", s.last.docs, s.docs)
			}
			want := `{"cursor":"0/2","old":true,"streams":{"k":{"mode":"Active"}}}`
			if got := compact(t, s.last.state); got != want {
				t.Errorf("state %s, want %s", got, want)
			}
			if mode := streamMode(s.last.state, "k"); mode != "Active" {
				t.Errorf("stream mode %q, want Active", mode)
			}
			if n := s.pendingAcks.Load(); n != 2 {
				t.Errorf("%d acknowledgements owed, want 2", n)
			}
		})
	}
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSessionRejectsUnknownResponses(t *testing.T) {
	// capture.Response{spec (1): {protocol (1): 3032023}}, framed.
	spec := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 3032023)
	response := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), spec)
	for codec, output := range map[string][]byte{
		"json":  []byte(`{"spec":{"protocol":3032023}}` + "\n"),
		"proto": append(binary.LittleEndian.AppendUint32(nil, uint32(len(response))), response...),
	} {
		s := &session{codec: codec, changed: make(chan struct{}), wakeAcks: make(chan struct{}, 1)}
		if err := s.read(bufio.NewReader(bytes.NewReader(output))); err == nil {
			t.Errorf("%s: a spec response within a session was accepted", codec)
		}
	}
}

func TestPercentile(t *testing.T) {
	var samples []time.Duration
	for i := 1; i <= 200; i++ {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[int]time.Duration{50: 100 * time.Millisecond, 99: 198 * time.Millisecond, 100: 200 * time.Millisecond} {
		if got := percentile(samples, p); got != want {
			t.Errorf("p%d of 1..200 ms is %v, want %v", p, got, want)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

// A small run of the whole benchmark: every phase completes, the connector's
// document counts check out (run fails otherwise), and the report has every
// consumer with a rate and each connector run its ratio to the limit.
func TestBenchmarkRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the connector and starts PostgreSQL")
	}
	// The benchmark's limit is pg_recvlogical, a PostgreSQL client program
	// that the fetched server builds lack.
	if out, err := exec.Command("pg_recvlogical", "--version").CombinedOutput(); err != nil {
		why := err.Error()
		if msg := bytes.TrimSpace(out); len(msg) > 0 {
			why += ": " + string(msg)
		}
		t.Skipf("the benchmark measures pg_recvlogical, which does not run here (%s); install the PostgreSQL client (apt-get install postgresql-client)", why)
	}
	res, err := run(context.Background(), options{
		rows: 3000, txnRows: 1000, bigTxn: 2000, chunkSize: 1000,
		codecs: codecs, formats: []string{"binary", "text"}, latency: 5, repeat: 2, cli: true, timeout: 2 * time.Minute,
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var consumers []string
	var walsenderCPU float64
	for _, m := range res.Measurements {
		consumers = append(consumers, m.Phase+": "+m.Consumer)
		if m.RowsPerSecond <= 0 || len(m.Runs) != 2 {
			t.Errorf("%s: %.0f rows/s over %d runs, want a rate over 2 runs", m.Consumer, m.RowsPerSecond, len(m.Runs))
		}
		if strings.HasPrefix(m.Consumer, "connector") && (m.RatioToLimit <= 0 || m.PeakRSS <= 0 || m.CPUSeconds <= 0) {
			t.Errorf("%s: ratio %.2f, peak RSS %d, CPU %.3fs; want all of them", m.Consumer, m.RatioToLimit, m.PeakRSS, m.CPUSeconds)
		}
		walsenderCPU += m.WalsenderSeconds
	}
	// backfill: COPY, keyset, 2 codecs, the shell mode; each streaming
	// phase: pg_recvlogical in text and in binary, 2 codecs in 2 formats,
	// the shell mode, and the one-transaction one pg_recvlogical streaming;
	// the live one: pg_recvlogical, the first codec.
	if len(res.Measurements) != 5+7+8+2 {
		t.Errorf("measurements:\n%s", strings.Join(consumers, "\n"))
	}
	// Each run's is a few clock ticks at most, which may round to none.
	if walsenderCPU <= 0 {
		t.Error("no walsender CPU time was measured")
	}
	if res.Latency == nil || res.Latency.Commits != 5 || res.Latency.P50Ms <= 0 {
		t.Errorf("latency %+v, want 5 commits", res.Latency)
	}
	var table bytes.Buffer
	if err := report(res, "", &table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "pg_recvlogical") || !strings.Contains(table.String(), "p99") {
		t.Errorf("the table lacks the streaming limit or the latency:\n%s", table.String())
	}
}
