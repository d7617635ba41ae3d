package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/encoding/protowire"
)

// unhex decodes a hex string that may contain spaces.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// readAll reads every request of input, which must end cleanly.
func readAll(t *testing.T, input []byte, c Codec) []*Request {
	t.Helper()
	// OneByteReader makes sure nothing depends on how the input is chunked.
	r := NewReader(iotest.OneByteReader(bytes.NewReader(input)), c)
	var reqs []*Request
	for {
		req, err := r.Read()
		if err == io.EOF {
			return reqs
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		reqs = append(reqs, req)
	}
}

func readOne(t *testing.T, input []byte, c Codec) *Request {
	t.Helper()
	reqs := readAll(t, input, c)
	if len(reqs) != 1 {
		t.Fatalf("read %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

func readErr(t *testing.T, input []byte, c Codec) error {
	t.Helper()
	r := NewReader(bytes.NewReader(input), c)
	for {
		_, err := r.Read()
		if err == io.EOF {
			t.Fatalf("reading %q: got a clean end, want an error", input)
		}
		if err != nil {
			return err
		}
	}
}

func sortedNames(m map[string]*Request) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func TestReadFactSheetExamples(t *testing.T) {
	max32 := uint32(math.MaxUint32)
	for _, tc := range []struct {
		name  string
		codec Codec
		input string
		want  *Request
	}{
		{"spec proto", Proto, "02 00 00 00 0A 00", &Request{Spec: &SpecRequest{}}},
		{"spec json", JSON, `{"spec":{}}` + "\n", &Request{Spec: &SpecRequest{}}},
		{"acknowledge proto", Proto, "04 00 00 00 32 02 08 01", &Request{Acknowledge: &AcknowledgeRequest{Checkpoints: 1}}},
		{"acknowledge json", JSON, `{"acknowledge":{"checkpoints":1}}` + "\n", &Request{Acknowledge: &AcknowledgeRequest{Checkpoints: 1}}},
		{"acknowledge default json", JSON, `{"acknowledge":{}}` + "\n", &Request{Acknowledge: &AcknowledgeRequest{}}},
		{
			// Open{range: RangeSpec{keyEnd, rClockEnd}} around the fact
			// sheet's RangeSpec bytes.
			"range proto", Proto, "0E 00 00 00 2A 0C 1A 0A 1D FF FF FF FF 2D FF FF FF FF",
			&Request{Open: &OpenRequest{Range: &RangeSpec{KeyEnd: max32, RClockEnd: max32}}},
		},
		{
			"range json", JSON, `{"open":{"range":{"keyEnd":4294967295,"rClockEnd":4294967295},"state":{}}}` + "\n",
			&Request{Open: &OpenRequest{Range: &RangeSpec{KeyEnd: max32, RClockEnd: max32}, State: raw(`{}`)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := []byte(tc.input)
			if tc.codec == Proto {
				input = unhex(t, tc.input)
			}
			if got := readOne(t, input, tc.codec); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadRoundTrip(t *testing.T) {
	requests := testRequests()
	names := sortedNames(requests)
	encodings := []struct {
		name   string
		codec  Codec
		encode func(*Request) []byte
	}{
		{"proto", Proto, protoEncoder{}.frame},
		{"json", JSON, func(r *Request) []byte { return jsonEncoder{}.line(t, r) }},
		{"json proto names", JSON, func(r *Request) []byte { return jsonEncoder{protoNames: true}.line(t, r) }},
	}
	for _, enc := range encodings {
		t.Run(enc.name, func(t *testing.T) {
			// One stream of all requests, as a session sees open then acks.
			var stream []byte
			for _, name := range names {
				stream = append(stream, enc.encode(requests[name])...)
			}
			got := readAll(t, stream, enc.codec)
			if len(got) != len(names) {
				t.Fatalf("read %d requests, want %d", len(got), len(names))
			}
			for i, name := range names {
				if !reflect.DeepEqual(got[i], requests[name]) {
					t.Errorf("%s: got\n%+v\nwant\n%+v", name, got[i], requests[name])
				}
			}
		})
	}
}

// TestReadSkipsUnknownFields surrounds every message of every request with
// fields the decoder does not know, of each wire type, including $internal.
func TestReadSkipsUnknownFields(t *testing.T) {
	unknown := map[string][]byte{
		"varint":    protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 300),
		"i64":       protowire.AppendFixed64(protowire.AppendTag(nil, 12, protowire.Fixed64Type), 1<<60),
		"len":       protowire.AppendString(protowire.AppendTag(nil, 15, protowire.BytesType), "journal spec"),
		"i32":       protowire.AppendFixed32(protowire.AppendTag(nil, 13, protowire.Fixed32Type), 7),
		"$internal": protowire.AppendBytes(protowire.AppendTag(nil, 100, protowire.BytesType), []byte{0, 1, 2}),
	}
	requests := testRequests()
	for typ, extra := range unknown {
		t.Run("proto "+typ, func(t *testing.T) {
			for _, name := range sortedNames(requests) {
				got := readOne(t, protoEncoder{extra: extra}.frame(requests[name]), Proto)
				if !reflect.DeepEqual(got, requests[name]) {
					t.Errorf("%s: got\n%+v\nwant\n%+v", name, got, requests[name])
				}
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		enc := jsonEncoder{extra: map[string]any{
			"$internal":     "AAEC",
			"shardTemplate": map[string]any{"id": "x", "maxTxnDuration": "1s", "labels": []any{1, nil}},
			"unknownNumber": 1.5,
		}}
		for _, name := range sortedNames(requests) {
			got := readOne(t, enc.line(t, requests[name]), JSON)
			if !reflect.DeepEqual(got, requests[name]) {
				t.Errorf("%s: got\n%+v\nwant\n%+v", name, got, requests[name])
			}
		}
	})
}

func TestReadJSONForms(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        *Request
	}{
		{
			"null raw fields are empty",
			`{"open":{"capture":{"config":null,"bindings":null},"state":null,"range":null}}`,
			&Request{Open: &OpenRequest{Capture: &CaptureSpec{}}},
		},
		{
			"connector type names and numbers",
			`{"validate":{"connectorType":"LOCAL","lastCapture":{"connectorType":7}}}`,
			&Request{Validate: &ValidateRequest{ConnectorType: 8, LastCapture: &CaptureSpec{ConnectorType: 7}}},
		},
		{
			"unknown connector type is unset",
			`{"spec":{"connectorType":"SOMETHING_NEW"}}`,
			&Request{Spec: &SpecRequest{}},
		},
		{
			"integers as strings",
			`{"acknowledge":{"checkpoints":"2"}}`,
			&Request{Acknowledge: &AcknowledgeRequest{Checkpoints: 2}},
		},
		{
			"raw fields kept verbatim",
			`{"spec":{"config":{"b": [1, 2],  "a":"x"}}}`,
			&Request{Spec: &SpecRequest{Config: raw(`{"b": [1, 2],  "a":"x"}`)}},
		},
		{
			"pretty-printed request",
			"{\n  \"acknowledge\": {\n    \"checkpoints\": 4\n  }\n}\n",
			&Request{Acknowledge: &AcknowledgeRequest{Checkpoints: 4}},
		},
		{
			"json name wins over proto name",
			`{"spec":{"config":{"a":1},"config_json":{"b":2}}}`,
			&Request{Spec: &SpecRequest{Config: raw(`{"a":1}`)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readOne(t, []byte(tc.input+"\n"), JSON); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadLargeRequest(t *testing.T) {
	// Larger than the chunk a proto frame is first read into, so that its
	// buffer must grow, and read one byte at a time by readOne.
	state := append(append([]byte(`"`), bytes.Repeat([]byte("s"), 3<<20)...), '"')
	want := &Request{Open: &OpenRequest{Capture: testCapture(), State: state}}
	for _, c := range []Codec{Proto, JSON} {
		input := protoEncoder{}.frame(want)
		if c == JSON {
			input = jsonEncoder{}.line(t, want)
		}
		if got := readOne(t, input, c); !reflect.DeepEqual(got, want) {
			t.Errorf("%v: large request did not round-trip", c)
		}
	}
}

func TestReadProtoForms(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        *Request
	}{
		{
			// Two occurrences of open merge, as with generated protobuf code.
			"repeated message merges",
			"0C 00 00 00 2A 04 12 02 76 31 2A 04 22 02 7B 7D",
			&Request{Open: &OpenRequest{Version: "v1", State: raw(`{}`)}},
		},
		{"empty raw field is nil", "04 00 00 00 0A 02 12 00", &Request{Spec: &SpecRequest{}}},
		{"last scalar wins", "06 00 00 00 32 04 08 01 08 05", &Request{Acknowledge: &AcknowledgeRequest{Checkpoints: 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readOne(t, unhex(t, tc.input), Proto); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec Codec
		input string // hex for Proto
		want  []string
	}{
		{"truncated prefix", Proto, "02 00", []string{"4-byte length prefix"}},
		{"truncated frame", Proto, "04 00 00 00 32 02", []string{"after 2 of 4 bytes"}},
		{"truncated second frame", Proto, "02 00 00 00 0A 00 04 00 00 00 32", []string{"after 1 of 4 bytes"}},
		{"oversized frame", Proto, "FF FF FF 7F 0A 00", []string{"2147483647 bytes", "limit"}},
		{"no request", Proto, "00 00 00 00", []string{"none of spec"}},
		{"only $internal", Proto, "05 00 00 00 A2 06 02 00 01", []string{"none of spec"}},
		{"two requests in one", Proto, "04 00 00 00 0A 00 32 00", []string{"spec and acknowledge", "exactly one"}},
		{"group wire type", Proto, "03 00 00 00 0A 01 0B", []string{"capture.Request.Spec field 1", "wire type 3"}},
		{"wrong wire type", Proto, "04 00 00 00 32 02 0A 00", []string{"capture.Request.Acknowledge field 1", "wire type len, want varint"}},
		{"sub-message overruns", Proto, "02 00 00 00 0A 05", []string{"capture.Request field 1", "malformed"}},
		{"unterminated varint", Proto, "03 00 00 00 32 01 08", []string{"capture.Request.Acknowledge field 1", "malformed"}},
		{"bad nested range", Proto, "07 00 00 00 2A 05 1A 03 1D FF FF", []string{"flow.RangeSpec field 3", "malformed"}},
		{"bad second binding", Proto, "0A 00 00 00 2A 08 0A 06 22 00 22 02 10 01",
			[]string{"flow.CaptureSpec field 4: element 1: flow.CaptureSpec.Binding field 2: wire type varint, want len"}},
		{"json to proto reader", Proto, hex.EncodeToString([]byte(`{"spec":{}}` + "\n")), []string{"FLOW_RUNTIME_CODEC=json"}},
		{"short json to proto reader", Proto, hex.EncodeToString([]byte(`{}`)), []string{"FLOW_RUNTIME_CODEC=json"}},

		{"partial line", JSON, `{"spec":{`, []string{"unexpected EOF"}},
		{"not json", JSON, "\x02\x00\x00\x00\x0a\x00", []string{"reading JSON request", "invalid character"}},
		{"not an object", JSON, `[1]`, []string{"request: want a JSON object"}},
		{"empty object", JSON, `{}`, []string{"none of spec"}},
		{"only unknown keys", JSON, `{"$internal":"AA==","other":{}}`, []string{"none of spec"}},
		{"two requests in one", JSON, `{"spec":{},"open":{}}`, []string{"spec and open"}},
		{"request not an object", JSON, `{"open":[]}`, []string{"open: want a JSON object"}},
		{"string for number", JSON, `{"acknowledge":{"checkpoints":"x"}}`, []string{"acknowledge.checkpoints", "unsigned 32-bit"}},
		{"negative number", JSON, `{"acknowledge":{"checkpoints":-1}}`, []string{"acknowledge.checkpoints"}},
		{"number too large", JSON, `{"open":{"range":{"keyEnd":4294967296}}}`, []string{"open.range.keyEnd", "out of range"}},
		{"bad nested field", JSON, `{"open":{"capture":{"bindings":[{},{"resource_path":"public"}]}}}`,
			[]string{"open.capture.bindings[1].resource_path", "array of strings"}},
		{"bad bool", JSON, `{"validate":{"bindings":[{"collection":{"projections":[{"explicit":1}]}}]}}`,
			[]string{"validate.bindings[0].collection.projections[0].explicit"}},
		{"bad connector type", JSON, `{"spec":{"connectorType":true}}`, []string{"spec.connectorType"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := []byte(tc.input)
			if tc.codec == Proto {
				input = unhex(t, tc.input)
			}
			err := readErr(t, input, tc.codec)
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestReadPassesThroughIOErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, c := range []Codec{Proto, JSON} {
		_, err := NewReader(iotest.ErrReader(boom), c).Read()
		if !errors.Is(err, boom) {
			t.Errorf("%v: got %v, want an error wrapping %v", c, err, boom)
		}
	}
}

func TestReadUnknownCodec(t *testing.T) {
	if _, err := NewReader(strings.NewReader(""), Codec(9)).Read(); err == nil || !strings.Contains(err.Error(), "unknown codec") {
		t.Errorf("got %v, want an unknown codec error", err)
	}
}

func TestReadEmptyInput(t *testing.T) {
	for _, c := range []Codec{Proto, JSON} {
		if _, err := NewReader(strings.NewReader(""), c).Read(); err != io.EOF {
			t.Errorf("%v: got %v, want io.EOF", c, err)
		}
	}
	if _, err := NewReader(strings.NewReader("\n  \n"), JSON).Read(); err != io.EOF {
		t.Errorf("JSON with trailing whitespace: got %v, want io.EOF", err)
	}
}
