package protocol

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// TestProtoRequestRoundTrip proves that the runtime-side encoder and the
// connector's decoder agree: what AppendProtoOpen and AppendProtoAcknowledge
// write, Reader reads back unchanged.
func TestProtoRequestRoundTrip(t *testing.T) {
	open := &OpenRequest{
		Capture: &CaptureSpec{
			Name:          "acmeCo/test/source-postgres",
			ConnectorType: ConnectorTypeImage,
			Config:        json.RawMessage(`{"address":"db:5432"}`),
			Bindings: []CaptureBinding{{
				ResourceConfig: json.RawMessage(`{"namespace":"public","stream":"t"}`),
				ResourcePath:   []string{"public", "t"},
				Collection: CollectionSpec{
					Name:        "acmeCo/test/public/t",
					Key:         []string{"/id"},
					UUIDPtr:     "/_meta/uuid",
					Projections: []Projection{{Ptr: "/id", Field: "id", IsPrimaryKey: true}, {Ptr: "/p", Field: "p", Explicit: true, IsPartitionKey: true}},
					WriteSchema: json.RawMessage(`{"type":"object"}`),
					ReadSchema:  json.RawMessage(`{"type":"object","x":1}`),
				},
				Backfill: 2,
				StateKey: "public%2Ft.v2",
			}},
			IntervalSeconds: 1,
		},
		Version: "test",
		Range:   &RangeSpec{KeyEnd: math.MaxUint32, RClockBegin: 7, RClockEnd: math.MaxUint32},
		State:   json.RawMessage(`{"cursor":"0/1"}`),
	}
	frames := AppendProtoAcknowledge(AppendProtoOpen(nil, open), 3)
	r := NewReader(bytes.NewReader(frames), Proto)

	got, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Open, open) {
		t.Errorf("open: read back %+v, want %+v", got.Open, open)
	}
	if got, err = r.Read(); err != nil {
		t.Fatal(err)
	}
	if got.Acknowledge == nil || got.Acknowledge.Checkpoints != 3 {
		t.Errorf("acknowledge: read back %+v, want 3 checkpoints", got.Acknowledge)
	}
}
