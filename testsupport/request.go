package testsupport

import (
	"encoding/json"
	"math"
	"strings"

	"pgcapture/protocol"
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
			"stateKey":       protocol.StateKey(path, b.Backfill),
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
