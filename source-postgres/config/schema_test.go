package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestSchemaGolden(t *testing.T) {
	for _, tc := range []struct {
		file   string
		schema json.RawMessage
	}{
		{"config-schema.json", ConfigSchema()},
		{"resource-schema.json", ResourceSchema()},
	} {
		var got bytes.Buffer
		if err := json.Indent(&got, tc.schema, "", "  "); err != nil {
			t.Fatalf("%s: the schema is not valid JSON: %v", tc.file, err)
		}
		got.WriteByte('\n')

		path := filepath.Join("testdata", tc.file)
		if *update {
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s differs from the generated schema; if the change is intended, run go test -update and review the diff.\ngot:\n%s", path, got.Bytes())
		}
	}
}

// schemaNode is the part of a JSON schema the annotation tests look at.
type schemaNode struct {
	Type        string                 `json:"type"`
	Title       string                 `json:"title"`
	Description string                 `json:"description"`
	Default     any                    `json:"default"`
	Required    []string               `json:"required"`
	Properties  map[string]*schemaNode `json:"properties"`
	Order       *int                   `json:"order"`
	Secret      bool                   `json:"secret"`
	Multiline   bool                   `json:"multiline"`
	Advanced    bool                   `json:"advanced"`
}

func decodeSchema(t *testing.T, raw json.RawMessage) *schemaNode {
	t.Helper()
	var s schemaNode
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("decoding schema: %v", err)
	}
	return &s
}

// property returns the schema of the property at a dotted path.
func (s *schemaNode) property(t *testing.T, path string) *schemaNode {
	t.Helper()
	for name := range strings.SplitSeq(path, ".") {
		if s = s.Properties[name]; s == nil {
			t.Fatalf("schema has no property %q", path)
		}
	}
	return s
}

func TestConfigSchemaAnnotations(t *testing.T) {
	s := decodeSchema(t, ConfigSchema())

	if want := []string{"address", "database", "user"}; !slices.Equal(s.Required, want) {
		t.Errorf("required = %q, want %q (password is optional for trust and certificate authentication)", s.Required, want)
	}
	if !s.property(t, "advanced").Advanced {
		t.Error(`advanced lacks "advanced": true`)
	}
	for _, tc := range []struct {
		path              string
		secret, multiline bool
	}{
		{"password", true, false},
		{"advanced.ssl_ca", false, true},
		{"advanced.ssl_cert", false, true},
		{"advanced.ssl_key", true, true},
		{"networkTunnel.sshForwarding.privateKey", true, true},
		{"networkTunnel.sshForwarding.hostKey", false, false},
		{"address", false, false},
	} {
		p := s.property(t, tc.path)
		if p.Secret != tc.secret || p.Multiline != tc.multiline {
			t.Errorf("%s: secret, multiline = %t, %t, want %t, %t", tc.path, p.Secret, p.Multiline, tc.secret, tc.multiline)
		}
	}
	checkTitlesAndOrder(t, "", s)
}

func TestResourceSchemaAnnotations(t *testing.T) {
	s := decodeSchema(t, ResourceSchema())
	if want := []string{"namespace", "stream"}; !slices.Equal(s.Required, want) {
		t.Errorf("required = %q, want %q", s.Required, want)
	}
	checkTitlesAndOrder(t, "", s)
}

// checkTitlesAndOrder checks that every property is documented and that the
// "order" of the properties of each object counts up from 0 in struct order.
func checkTitlesAndOrder(t *testing.T, path string, s *schemaNode) {
	t.Helper()
	orders := make([]int, 0, len(s.Properties))
	for name, p := range s.Properties {
		if p.Title == "" || p.Description == "" {
			t.Errorf("property %s%s lacks a title or description", path, name)
		}
		if p.Order == nil {
			t.Errorf("property %s%s lacks an order", path, name)
		} else {
			orders = append(orders, *p.Order)
		}
		checkTitlesAndOrder(t, path+name+".", p)
	}
	slices.Sort(orders)
	for i, o := range orders {
		if o != i {
			t.Errorf("the orders of the properties of %q are %v, want 0 to %d", path, orders, len(orders)-1)
			break
		}
	}
}

// TestConfigSchemaDefaultsMatchParse checks that the defaults the schema
// advertises are the ones Parse applies.
func TestConfigSchemaDefaultsMatchParse(t *testing.T) {
	e, err := Parse([]byte(`{"address": "db"}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var parsed map[string]any
	if err := json.Unmarshal(mustJSON(t, e), &parsed); err != nil {
		t.Fatal(err)
	}

	var count int
	var walk func(path string, s *schemaNode, value map[string]any)
	walk = func(path string, s *schemaNode, value map[string]any) {
		for name, p := range s.Properties {
			if p.Default != nil {
				count++
				if got := value[name]; !reflect.DeepEqual(got, p.Default) {
					t.Errorf("%s%s: schema default %#v, but Parse applies %#v", path, name, p.Default, got)
				}
			}
			if nested, ok := value[name].(map[string]any); ok {
				walk(path+name+".", p, nested)
			}
		}
	}
	walk("", decodeSchema(t, ConfigSchema()), parsed)
	if count < 7 {
		t.Errorf("found %d defaults in the schema, want at least 7", count)
	}
}
