package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// Builders for expected protobuf bytes.

func pbVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func pbBytes(num protowire.Number, parts ...[]byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), bytes.Join(parts, nil))
}

func pbString(num protowire.Number, s string) []byte { return pbBytes(num, []byte(s)) }

func framed(msg ...[]byte) []byte {
	body := bytes.Join(msg, nil)
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(body))), body...)
}

var specURL = "https://go.estuary.dev/source-postgresql"

func TestWrite(t *testing.T) {
	discovered := []DiscoveredBinding{
		{
			RecommendedName: "public/users",
			ResourceConfig:  raw(`{"namespace":"public","stream":"users"}`),
			DocumentSchema:  raw(`{"type":"object","description":"a <b> & c"}`),
			Key:             []string{"/id"},
			Disable:         true,
			ResourcePath:    []string{"public", "users"},
			IsFallbackKey:   true,
		},
		{RecommendedName: "public/t", ResourceConfig: raw(`{}`), DocumentSchema: raw(`true`)},
	}
	for _, tc := range []struct {
		name      string
		write     func(*Writer) error
		wantProto []byte
		wantJSON  string
	}{
		{
			"opened explicit acks",
			func(w *Writer) error { return w.WriteOpened(true) },
			unhex(t, "04 00 00 00 2A 02 08 01"),
			`{"opened":{"explicitAcknowledgements":true}}`,
		},
		{
			"opened without acks is still present",
			func(w *Writer) error { return w.WriteOpened(false) },
			unhex(t, "02 00 00 00 2A 00"),
			`{"opened":{}}`,
		},
		{
			"captured binding 0",
			func(w *Writer) error { return flushed(w, w.WriteCaptured(0, []byte(`{}`))) },
			unhex(t, "06 00 00 00 32 04 12 02 7B 7D"),
			`{"captured":{"doc":{}}}`,
		},
		{
			"captured binding 300",
			func(w *Writer) error { return flushed(w, w.WriteCaptured(300, []byte(`{"a":"<b>"}`))) },
			framed(pbBytes(6, pbVarint(1, 300), pbString(2, `{"a":"<b>"}`))),
			`{"captured":{"binding":300,"doc":{"a":"<b>"}}}`,
		},
		{
			"checkpoint merge patch",
			func(w *Writer) error { return w.WriteCheckpoint([]byte(`{}`), true) },
			unhex(t, "0A 00 00 00 3A 08 0A 06 0A 02 7B 7D 10 01"),
			`{"checkpoint":{"state":{"updated":{},"mergePatch":true}}}`,
		},
		{
			"checkpoint replace",
			func(w *Writer) error { return w.WriteCheckpoint([]byte(`{"cursor":"0/1"}`), false) },
			framed(pbBytes(7, pbBytes(1, pbString(1, `{"cursor":"0/1"}`)))),
			`{"checkpoint":{"state":{"updated":{"cursor":"0/1"}}}}`,
		},
		{
			"spec protocol only",
			func(w *Writer) error { return w.WriteSpec(&SpecResponse{Protocol: ProtocolVersion}) },
			framed(pbBytes(1, unhex(t, "08 D7 87 B9 01"))),
			`{"spec":{"protocol":3032023}}`,
		},
		{
			"spec empty is still present",
			func(w *Writer) error { return w.WriteSpec(&SpecResponse{}) },
			unhex(t, "02 00 00 00 0A 00"),
			`{"spec":{}}`,
		},
		{
			"spec",
			func(w *Writer) error {
				return w.WriteSpec(&SpecResponse{
					Protocol:             ProtocolVersion,
					ConfigSchema:         raw(`{"type":"object"}`),
					ResourceConfigSchema: raw(`{"type":"object","required":["stream"]}`),
					DocumentationURL:     specURL,
					ResourcePathPointers: []string{"/namespace", "/stream"},
				})
			},
			framed(pbBytes(1,
				pbVarint(1, ProtocolVersion),
				pbString(2, `{"type":"object"}`),
				pbString(3, `{"type":"object","required":["stream"]}`),
				pbString(4, specURL),
				pbString(6, "/namespace"),
				pbString(6, "/stream"),
			)),
			`{"spec":{"protocol":3032023,"configSchema":{"type":"object"},` +
				`"resourceConfigSchema":{"type":"object","required":["stream"]},` +
				`"documentationUrl":"https://go.estuary.dev/source-postgresql",` +
				`"resourcePathPointers":["/namespace","/stream"]}}`,
		},
		{
			"discovered",
			func(w *Writer) error { return w.WriteDiscovered(discovered) },
			framed(pbBytes(2,
				pbBytes(1,
					pbString(1, "public/users"),
					pbString(2, `{"namespace":"public","stream":"users"}`),
					pbString(3, `{"type":"object","description":"a <b> & c"}`),
					pbString(4, "/id"),
					pbVarint(5, 1),
					pbString(6, "public"),
					pbString(6, "users"),
					pbVarint(7, 1),
				),
				pbBytes(1, pbString(1, "public/t"), pbString(2, `{}`), pbString(3, `true`)),
			)),
			`{"discovered":{"bindings":[{"recommendedName":"public/users",` +
				`"resourceConfig":{"namespace":"public","stream":"users"},` +
				`"documentSchema":{"type":"object","description":"a <b> & c"},"key":["/id"],` +
				`"disable":true,"resourcePath":["public","users"],"isFallbackKey":true},` +
				`{"recommendedName":"public/t","resourceConfig":{},"documentSchema":true}]}}`,
		},
		{
			"discovered nothing",
			func(w *Writer) error { return w.WriteDiscovered(nil) },
			unhex(t, "02 00 00 00 12 00"),
			`{"discovered":{}}`,
		},
		{
			"validated",
			func(w *Writer) error {
				return w.WriteValidated([]ValidatedBinding{{ResourcePath: []string{"public", "users"}}, {}})
			},
			framed(pbBytes(3, pbBytes(1, pbString(1, "public"), pbString(1, "users")), pbBytes(1))),
			`{"validated":{"bindings":[{"resourcePath":["public","users"]},{}]}}`,
		},
		{
			"applied nothing",
			func(w *Writer) error { return w.WriteApplied("") },
			unhex(t, "02 00 00 00 22 00"),
			`{"applied":{}}`,
		},
		{
			"applied",
			func(w *Writer) error { return w.WriteApplied("created publication \"flow\"") },
			framed(pbBytes(4, pbString(1, `created publication "flow"`))),
			`{"applied":{"actionDescription":"created publication \"flow\""}}`,
		},
		{
			"sourced schema binding 0",
			func(w *Writer) error { return w.WriteSourcedSchema(0, []byte(`{"type":"object"}`)) },
			framed(pbBytes(8, pbString(2, `{"type":"object"}`))),
			`{"sourcedSchema":{"documentSchema":{"type":"object"}}}`,
		},
		{
			"sourced schema binding 2",
			func(w *Writer) error { return w.WriteSourcedSchema(2, []byte(`{}`)) },
			framed(pbBytes(8, pbVarint(1, 2), pbString(2, `{}`))),
			`{"sourcedSchema":{"binding":2,"documentSchema":{}}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// No Flush here: every method but WriteCaptured must flush.
			var out bytes.Buffer
			if err := tc.write(NewWriter(&out, Proto)); err != nil {
				t.Fatalf("proto: %v", err)
			}
			if !bytes.Equal(out.Bytes(), tc.wantProto) {
				t.Errorf("proto:\n got % X\nwant % X", out.Bytes(), tc.wantProto)
			}
			out.Reset()
			if err := tc.write(NewWriter(&out, JSON)); err != nil {
				t.Fatalf("json: %v", err)
			}
			if got := out.String(); got != tc.wantJSON+"\n" {
				t.Errorf("json:\n got %s\nwant %s", got, tc.wantJSON)
			}
		})
	}
}

// flushed flushes w after a write that doesn't flush by itself.
func flushed(w *Writer, err error) error {
	if err != nil {
		return err
	}
	return w.Flush()
}

func TestWriteJSONCompactsEmbeddedJSON(t *testing.T) {
	pretty := []byte("{\n  \"type\": \"object\",\n  \"properties\": {\n    \"a\": {\"type\": \"string\"}\n  }\n}\n")
	var out bytes.Buffer
	w := NewWriter(&out, JSON)
	writes := []error{
		w.WriteSpec(&SpecResponse{Protocol: ProtocolVersion, ConfigSchema: pretty, ResourceConfigSchema: pretty}),
		w.WriteDiscovered([]DiscoveredBinding{{RecommendedName: "a\nb", ResourceConfig: pretty, DocumentSchema: pretty}}),
		w.WriteApplied("first-line\nsecond-line"),
		w.WriteSourcedSchema(1, pretty),
		w.WriteCheckpoint(pretty, true),
	}
	if err := errors.Join(writes...); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(out.String(), "\n")
	if last := lines[len(lines)-1]; last != "" {
		t.Fatalf("output ends with a partial line %q", last)
	}
	lines = lines[:len(lines)-1]
	if len(lines) != len(writes) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(writes), out.String())
	}
	for _, line := range lines {
		if !json.Valid([]byte(line)) {
			t.Errorf("line is not JSON: %s", line)
		}
		if strings.Contains(line, " ") {
			t.Errorf("line is not compact: %s", line)
		}
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(*Writer) error
		want  string
	}{
		{"nil spec", func(w *Writer) error { return w.WriteSpec(nil) }, "SpecResponse is nil"},
		{"bad config schema", func(w *Writer) error {
			return w.WriteSpec(&SpecResponse{ConfigSchema: raw(`{"type":`)})
		}, "configSchema is not valid JSON"},
		{"bad resource config schema", func(w *Writer) error {
			return w.WriteSpec(&SpecResponse{ResourceConfigSchema: raw(`nope`)})
		}, "resourceConfigSchema is not valid JSON"},
		{"bad document schema", func(w *Writer) error {
			return w.WriteDiscovered([]DiscoveredBinding{
				{RecommendedName: "ok", DocumentSchema: raw(`{}`)},
				{RecommendedName: "public/bad", DocumentSchema: raw(`{]`)},
			})
		}, `binding 1 ("public/bad"): documentSchema is not valid JSON`},
		{"bad resource config", func(w *Writer) error {
			return w.WriteDiscovered([]DiscoveredBinding{{ResourceConfig: raw(`'x'`)}})
		}, "resourceConfig is not valid JSON"},
		{"empty checkpoint", func(w *Writer) error { return w.WriteCheckpoint(nil, true) }, "state update is empty"},
		{"bad checkpoint", func(w *Writer) error {
			return w.WriteCheckpoint([]byte(`{"a":}`), true)
		}, "state update is not valid JSON"},
		{"empty sourced schema", func(w *Writer) error { return w.WriteSourcedSchema(3, nil) }, "binding 3: schema is empty"},
		{"bad sourced schema", func(w *Writer) error {
			return w.WriteSourcedSchema(3, []byte(`{`))
		}, "binding 3: schema is not valid JSON"},
		{"empty document", func(w *Writer) error { return w.WriteCaptured(4, nil) }, "binding 4: document is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []Codec{Proto, JSON} {
				var out bytes.Buffer
				w := NewWriter(&out, c)
				err := tc.write(w)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%v: got error %v, want one containing %q", c, err, tc.want)
				}
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				if out.Len() != 0 {
					t.Errorf("%v: a rejected message wrote %q", c, out.Bytes())
				}
			}
		})
	}
}

func TestWriteCapturedIsBufferedUntilFlush(t *testing.T) {
	for _, c := range []Codec{Proto, JSON} {
		var out bytes.Buffer
		w := NewWriter(&out, c)
		for i := range 3 {
			if err := w.WriteCaptured(uint32(i), []byte(`{"id":1}`)); err != nil {
				t.Fatal(err)
			}
		}
		if out.Len() != 0 {
			t.Errorf("%v: captured documents were flushed before a checkpoint", c)
		}
		if err := w.WriteCheckpoint([]byte(`{}`), true); err != nil {
			t.Fatal(err)
		}
		// Everything written so far, the checkpoint last, must have reached out.
		var want bytes.Buffer
		ref := NewWriter(&want, c)
		for i := range 3 {
			if err := ref.WriteCaptured(uint32(i), []byte(`{"id":1}`)); err != nil {
				t.Fatal(err)
			}
		}
		if err := ref.WriteCheckpoint([]byte(`{}`), true); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want.Bytes()) || out.Len() == 0 {
			t.Errorf("%v: after checkpoint got %q, want %q", c, out.Bytes(), want.Bytes())
		}
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestWriteReportsIOErrors(t *testing.T) {
	boom := errors.New("broken pipe")
	big := append(append([]byte(`"`), bytes.Repeat([]byte("x"), 2<<20)...), '"')
	for _, c := range []Codec{Proto, JSON} {
		for name, write := range map[string]func(*Writer) error{
			"checkpoint": func(w *Writer) error { return w.WriteCheckpoint([]byte(`{}`), true) },
			"opened":     func(w *Writer) error { return w.WriteOpened(true) },
			"flush":      func(w *Writer) error { return flushed(w, w.WriteCaptured(0, []byte(`{}`))) },
			// A document larger than the buffer goes straight to the writer.
			"large document": func(w *Writer) error { return w.WriteCaptured(0, big) },
		} {
			if err := write(NewWriter(failingWriter{boom}, c)); !errors.Is(err, boom) {
				t.Errorf("%v %s: got %v, want an error wrapping %v", c, name, err, boom)
			}
		}
	}
}

func TestWriteUnknownCodec(t *testing.T) {
	w := NewWriter(&bytes.Buffer{}, Codec(9))
	for name, err := range map[string]error{
		"captured":   w.WriteCaptured(0, []byte(`{}`)),
		"checkpoint": w.WriteCheckpoint([]byte(`{}`), true),
	} {
		if err == nil || !strings.Contains(err.Error(), "unknown codec") {
			t.Errorf("%s: got %v, want an unknown codec error", name, err)
		}
	}
}

var benchDoc = []byte(`{"_meta":{"op":"u","source":{"ts_ms":1755800000123,"schema":"public","table":"users",` +
	`"loc":[24377248,24377320,24377512],"txid":771}},"id":1,"name":"alicia","email":"alicia@example.com"}`)

func TestWriteCapturedDoesNotAllocate(t *testing.T) {
	for _, c := range []Codec{Proto, JSON} {
		w := NewWriter(discard{}, c)
		binding := uint32(0)
		allocs := testing.AllocsPerRun(1000, func() {
			binding = (binding + 1) % 3 // both with and without a binding field
			if err := w.WriteCaptured(binding, benchDoc); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: WriteCaptured allocates %.1f times per call", c, allocs)
		}
	}
}

// discard is io.Discard without its ReaderFrom, so that flushing a full
// buffer takes the same path as writing to stdout.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkWriteCaptured(b *testing.B) {
	for _, c := range []Codec{Proto, JSON} {
		b.Run(c.String(), func(b *testing.B) {
			w := NewWriter(discard{}, c)
			b.SetBytes(int64(len(benchDoc)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := w.WriteCaptured(uint32(i%4), benchDoc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
