package testsupport

import (
	"encoding/json"
	"testing"
)

func TestStateKey(t *testing.T) {
	for _, tc := range []struct {
		path     []string
		backfill uint32
		want     string
	}{
		{[]string{"public", "users"}, 0, "public%2Fusers"},
		{[]string{"public", "users"}, 1, "public%2Fusers.v1"},
		{[]string{"public", "users"}, 12, "public%2Fusers.v12"},
		{[]string{"my schema", "100%"}, 0, "my%20schema%2F100%25"},
		{[]string{"a-b_c+d.e=f", "g:h"}, 0, "a-b_c+d.e=f%2Fg%3Ah"},
		{[]string{"Ünïcödé", "日本語", "٣"}, 0, "Ünïcödé%2F日本語%2F٣"},
		{[]string{"emoji😀"}, 2, "emoji%F0%9F%98%80.v2"},
		{[]string{`q"uo'te`}, 0, "q%22uo%27te"},
	} {
		if got := StateKey(tc.path, tc.backfill); got != tc.want {
			t.Errorf("StateKey(%q, %d) = %q, want %q", tc.path, tc.backfill, got, tc.want)
		}
	}
}

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
