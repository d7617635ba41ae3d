package testsupport

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Binding describes one binding of an Open request.
type Binding struct {
	// Namespace and Stream name the table; they form the resource path.
	Namespace, Stream string
	// Mode is the resource's backfill mode; empty leaves it out.
	Mode string
	// Backfill is the binding's backfill counter. Bumping it changes the
	// binding's state key, which asks for a fresh backfill.
	Backfill uint32
	// ResourceConfig, if set, is sent instead of the resource configuration
	// built from Namespace, Stream and Mode.
	ResourceConfig json.RawMessage
	// Key is the collection key as JSON pointers, e.g. ["/id"].
	Key []string
}

// StateKey returns the key under which the runtime expects a binding's state:
// the resource path joined with "/", with every character other than a
// Unicode letter or digit or one of "-_+.=" percent-encoded as UTF-8, plus
// ".v<backfill>" when backfill is not zero. For example ["public", "users"]
// with backfill 1 gives "public%2Fusers.v1".
func StateKey(resourcePath []string, backfill uint32) string {
	var b strings.Builder
	for _, r := range strings.Join(resourcePath, "/") {
		if isStateKeyRune(r) {
			b.WriteRune(r)
			continue
		}
		var buf [utf8.UTFMax]byte
		for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if backfill > 0 {
		fmt.Fprintf(&b, ".v%d", backfill)
	}
	return b.String()
}

// isStateKeyRune matches what the runtime leaves unescaped: Rust's
// char::is_alphanumeric (the Alphabetic property or a numeric category)
// and "-_+.=".
func isStateKeyRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		strings.ContainsRune("-_+.=", r)
}

// OpenRequest builds a complete {"open": ...} request as the runtime sends
// it: config is the endpoint configuration, state the last committed
// connector state (nil for a new capture, which the runtime sends as {}).
func OpenRequest(config any, bindings []Binding, state json.RawMessage) map[string]any {
	specBindings := make([]any, len(bindings))
	for i, b := range bindings {
		path := []string{b.Namespace, b.Stream}
		var resource any = b.ResourceConfig
		if b.ResourceConfig == nil {
			r := map[string]any{"namespace": b.Namespace, "stream": b.Stream}
			if b.Mode != "" {
				r["mode"] = b.Mode
			}
			resource = r
		}
		collection := map[string]any{
			"name":        "acmeCo/test/" + b.Namespace + "/" + b.Stream,
			"writeSchema": map[string]any{"type": "object"},
			"uuidPtr":     "/_meta/uuid",
		}
		if len(b.Key) > 0 {
			collection["key"] = b.Key
			projections := make([]any, len(b.Key))
			for j, ptr := range b.Key {
				projections[j] = map[string]any{"ptr": ptr, "field": projectedField(ptr), "isPrimaryKey": true}
			}
			collection["projections"] = projections
		}
		binding := map[string]any{
			"resourceConfig": resource,
			"resourcePath":   path,
			"collection":     collection,
			"stateKey":       StateKey(path, b.Backfill),
		}
		if b.Backfill > 0 { // proto3 JSON leaves out zero values
			binding["backfill"] = b.Backfill
		}
		specBindings[i] = binding
	}
	if state == nil {
		state = json.RawMessage("{}")
	}
	return map[string]any{"open": map[string]any{
		"capture": map[string]any{
			"name":            "acmeCo/test/source-postgres",
			"connectorType":   "IMAGE",
			"config":          config,
			"bindings":        specBindings,
			"intervalSeconds": 1,
		},
		"version": "test",
		// An unsplit shard owns every key and r-clock.
		"range": map[string]any{"keyEnd": uint32(math.MaxUint32), "rClockEnd": uint32(math.MaxUint32)},
		"state": state,
	}}
}

// projectedField is the flattened field name Flow gives a JSON pointer: the
// pointer without its leading slash, e.g. "/id" → "id".
func projectedField(ptr string) string {
	return strings.TrimPrefix(ptr, "/")
}
