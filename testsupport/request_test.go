package testsupport

import (
	"encoding/json"
	"testing"

	"pgcapture/protocol"
)

func TestOpenRequest(t *testing.T) {
	request := OpenRequest(map[string]any{"address": "127.0.0.1:5432"}, []Binding{
		{Namespace: "public", Stream: "users", Key: []string{"/id"}},
		{Namespace: "public", Stream: "orders", Mode: "Only Changes", Backfill: 2, Key: []string{"/a", "/b"}},
		{Namespace: "other", Stream: "t", ResourceConfig: json.RawMessage(`{"namespace":"other","stream":"t","extra":1}`)},
	}, nil)
	encoded, err := json.Marshal(request)
	if err != nil {
		t.Fatal(err)
	}

	type binding struct {
		ResourceConfig map[string]any `json:"resourceConfig"`
		ResourcePath   []string       `json:"resourcePath"`
		Backfill       uint32         `json:"backfill"`
		StateKey       string         `json:"stateKey"`
		Collection     struct {
			Name        string   `json:"name"`
			Key         []string `json:"key"`
			Projections []struct {
				Ptr, Field   string
				IsPrimaryKey bool `json:"isPrimaryKey"`
			} `json:"projections"`
		} `json:"collection"`
	}
	var decoded struct {
		Open struct {
			Capture struct {
				Config   map[string]any `json:"config"`
				Bindings []binding      `json:"bindings"`
			} `json:"capture"`
			Range map[string]uint32 `json:"range"`
			State json.RawMessage   `json:"state"`
		} `json:"open"`
	}
	if err := json.Unmarshal(encoded, &decoded); err != nil {
		t.Fatal(err)
	}
	open := decoded.Open
	if open.Capture.Config["address"] != "127.0.0.1:5432" {
		t.Errorf("config = %v", open.Capture.Config)
	}
	if string(open.State) != "{}" {
		t.Errorf("state = %s, want {} for a new capture", open.State)
	}
	if open.Range["keyEnd"] != 0xFFFFFFFF || open.Range["rClockEnd"] != 0xFFFFFFFF || open.Range["keyBegin"] != 0 {
		t.Errorf("range = %v, want the full range", open.Range)
	}
	if len(open.Capture.Bindings) != 3 {
		t.Fatalf("%d bindings, want 3", len(open.Capture.Bindings))
	}

	users, orders, other := open.Capture.Bindings[0], open.Capture.Bindings[1], open.Capture.Bindings[2]
	if users.StateKey != "public%2Fusers" || users.Backfill != 0 || len(users.ResourceConfig) != 2 ||
		users.ResourceConfig["namespace"] != "public" || users.ResourceConfig["stream"] != "users" {
		t.Errorf("users binding = %+v", users)
	}
	if len(users.Collection.Projections) != 1 || users.Collection.Projections[0].Field != "id" || !users.Collection.Projections[0].IsPrimaryKey {
		t.Errorf("users projections = %+v, want the key field id", users.Collection.Projections)
	}
	if orders.StateKey != "public%2Forders.v2" || orders.Backfill != 2 || orders.ResourceConfig["mode"] != "Only Changes" ||
		len(orders.Collection.Key) != 2 || orders.ResourcePath[1] != "orders" {
		t.Errorf("orders binding = %+v", orders)
	}
	if other.ResourceConfig["extra"] != 1.0 || other.StateKey != "other%2Ft" || other.Collection.Key != nil {
		t.Errorf("binding with a resource config override = %+v", other)
	}

	withState := OpenRequest(nil, nil, json.RawMessage(`{"cursor":"0/1"}`))
	if got := withState["open"].(map[string]any)["state"]; string(got.(json.RawMessage)) != `{"cursor":"0/1"}` {
		t.Errorf("state = %s, want the one given", got)
	}
}

// The state keys of a request are protocol.StateKey's, which the capture
// command's state file uses too: the runtime's encoding, Other_Alphabetic
// marks (the Devanagari vowel signs here) kept.
func TestOpenRequestStateKey(t *testing.T) {
	request := OpenRequest(nil, []Binding{{Namespace: "public", Stream: "हिंदी", Backfill: 1}}, nil)
	encoded, err := json.Marshal(request)
	if err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Open struct {
			Capture struct {
				Bindings []struct {
					StateKey string `json:"stateKey"`
				} `json:"bindings"`
			} `json:"capture"`
		} `json:"open"`
	}
	if err := json.Unmarshal(encoded, &decoded); err != nil {
		t.Fatal(err)
	}
	got := decoded.Open.Capture.Bindings[0].StateKey
	if want := protocol.StateKey([]string{"public", "हिंदी"}, 1); got != want || got != "public%2Fहिंदी.v1" {
		t.Errorf("stateKey = %q, want %q", got, want)
	}
}
