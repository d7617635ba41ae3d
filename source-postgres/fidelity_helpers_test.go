package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// Helpers shared by the value-fidelity tests (types, TOAST, partitions,
// generated columns, identifiers, large values).

// strictValidator compiles a discovered document schema with format and
// content assertions on, which testsupport.NewSchemaValidator leaves off:
// a "date-time" must parse as RFC 3339, a base64 string must decode, and a
// "number" string must be a number, NaN or ±Infinity.
func strictValidator(t *testing.T, schema json.RawMessage) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		t.Fatalf("parsing the document schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.AssertContent()
	numeric := regexp.MustCompile(`^(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|-?Infinity)$`)
	c.RegisterFormat(&jsonschema.Format{Name: "number", Validate: func(v any) error {
		if s, ok := v.(string); ok && !numeric.MatchString(s) {
			return fmt.Errorf("%q is not a number", s)
		}
		return nil
	}})
	// json and jsonb values are embedded in the document, not encoded in a
	// string; their contentMediaType annotates the column (a materialization
	// tells json from jsonb by it), so a JSON string value such as "x" is not
	// content to decode.
	c.RegisterContentMediaType(&jsonschema.MediaType{Name: "application/json", Validate: func([]byte) error { return nil }})
	if err := c.AddResource("document.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("document.json")
	if err != nil {
		t.Fatalf("compiling the document schema: %v", err)
	}
	return s
}

// validateDocs checks every document against a strictValidator schema.
func validateDocs(t *testing.T, schema *jsonschema.Schema, docs []json.RawMessage) {
	t.Helper()
	for _, raw := range docs {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("document %.200s: %v", raw, err)
		}
		if err := schema.Validate(inst); err != nil {
			t.Errorf("document %.300s does not match its discovered schema: %v", raw, err)
		}
	}
}

// rawFields splits a document into its top-level members, keeping each
// value's exact JSON, and fails on a duplicated member.
func rawFields(t *testing.T, raw json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("document %.200s is not an object", raw)
	}
	fields := map[string]json.RawMessage{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("document %.200s: %v", raw, err)
		}
		name := tok.(string)
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			t.Fatalf("document %.200s: %v", raw, err)
		}
		if _, dup := fields[name]; dup {
			t.Fatalf("document %.200s has the member %q twice", raw, name)
		}
		fields[name] = v
	}
	return fields
}

// sameJSON reports whether two JSON texts hold the same value, numbers
// compared by their exact text.
func sameJSON(a, b []byte) bool {
	va, erra := decodeJSON(a)
	vb, errb := decodeJSON(b)
	return erra == nil && errb == nil && reflect.DeepEqual(va, vb)
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// bindingFor builds the Open binding of a discovered table, keyed as
// discovery recommends.
func bindingFor(t *testing.T, got map[string]discovered, recommendedName string) testsupport.Binding {
	t.Helper()
	b, ok := got[recommendedName]
	if !ok {
		names := make([]string, 0, len(got))
		for n := range got {
			names = append(names, n)
		}
		slices.Sort(names)
		t.Fatalf("%s was not discovered; discovered %q", recommendedName, names)
	}
	var res struct {
		Namespace string `json:"namespace"`
		Stream    string `json:"stream"`
		Mode      string `json:"mode"`
	}
	if err := json.Unmarshal(b.ResourceConfig, &res); err != nil {
		t.Fatalf("%s: resource config %s: %v", recommendedName, b.ResourceConfig, err)
	}
	return testsupport.Binding{Namespace: res.Namespace, Stream: res.Stream, Mode: res.Mode, Key: b.Key}
}

// openActive opens a capture of bindings and waits until every binding has
// finished its backfill.
func openActive(t *testing.T, f *fixture, bindings []testsupport.Binding, timeout time.Duration) *testsupport.Session {
	t.Helper()
	s := f.connector.Open(t, testsupport.OpenRequest(f.config(), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, timeout, "every binding backfilled", func(s *testsupport.Session) bool {
		st := s.State()
		for _, b := range bindings {
			if streamMode(t, st, protocol.StateKey([]string{b.Namespace, b.Stream}, b.Backfill)) != "Active" {
				return false
			}
		}
		return true
	})
	return s
}
