package protocol

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file holds test-only encoders for requests, playing the runtime's
// part, and the requests the round-trip tests send.

func raw(s string) json.RawMessage { return json.RawMessage(s) }

var testCollection = CollectionSpec{
	Name:    "acmeCo/pg/users",
	Key:     []string{"/id"},
	UUIDPtr: "/_meta/uuid",
	Projections: []Projection{
		{Ptr: "/id", Field: "id", Explicit: true, IsPartitionKey: true, IsPrimaryKey: true},
		{Ptr: "/name", Field: "name"},
	},
	WriteSchema: raw(`{"type":"object","required":["id"]}`),
	ReadSchema:  raw(`{"type":"object"}`),
}

func testCapture() *CaptureSpec {
	return &CaptureSpec{
		Name:          "acmeCo/pg/source-postgres",
		ConnectorType: 7,
		Config:        raw(`{"address":"db:5432","password":"p\u00e4ss"}`),
		Bindings: []CaptureBinding{
			{
				ResourceConfig: raw(`{"namespace":"public","stream":"users"}`),
				ResourcePath:   []string{"public", "users"},
				Collection:     testCollection,
				Backfill:       2,
				StateKey:       "public%2Fusers.v2",
			},
			{ResourcePath: []string{"public", "empty"}},
		},
		IntervalSeconds: 300,
	}
}

// testRequests covers every request type, fully populated and minimal.
func testRequests() map[string]*Request {
	return map[string]*Request{
		"spec/empty": {Spec: &SpecRequest{}},
		"spec/full":  {Spec: &SpecRequest{ConnectorType: 7, Config: raw(`{"address":"db"}`)}},
		"discover":   {Discover: &DiscoverRequest{ConnectorType: 8, Config: raw(`{"address":"db"}`)}},
		"validate/full": {Validate: &ValidateRequest{
			Name:          "acmeCo/pg/source-postgres",
			ConnectorType: 7,
			Config:        raw(`{"address":"db"}`),
			Bindings: []ValidateBinding{
				{ResourceConfig: raw(`{"namespace":"public","stream":"users"}`), Collection: testCollection, Backfill: 1},
				{ResourceConfig: raw(`{"namespace":"s","stream":"t"}`)},
			},
			LastCapture: testCapture(),
			LastVersion: "00aa",
		}},
		"validate/empty": {Validate: &ValidateRequest{}},
		"apply/full": {Apply: &ApplyRequest{
			Capture:     testCapture(),
			Version:     "1a2b",
			LastCapture: testCapture(),
			LastVersion: "0f0f",
		}},
		"apply/emptyCapture": {Apply: &ApplyRequest{Capture: &CaptureSpec{}}},
		"open/full": {Open: &OpenRequest{
			Capture: testCapture(),
			Version: "1a2b",
			Range:   &RangeSpec{KeyBegin: 1, KeyEnd: math.MaxUint32, RClockBegin: 2, RClockEnd: math.MaxUint32},
			State:   raw(`{"cursor":"0/173F7A0"}`),
		}},
		"open/emptyRange":   {Open: &OpenRequest{Range: &RangeSpec{}}},
		"acknowledge/zero":  {Acknowledge: &AcknowledgeRequest{}},
		"acknowledge/three": {Acknowledge: &AcknowledgeRequest{Checkpoints: 3}},
	}
}

// protoEncoder encodes requests as the runtime does. Every message it writes
// begins and ends with extra, which lets tests surround each known field with
// unknown ones at every level of nesting. Its field numbers are literals from
// the protocol fact sheet, not capture_fields.go's constants, so that a wrong
// constant fails the round trip instead of agreeing with itself.
type protoEncoder struct{ extra []byte }

func (e protoEncoder) frame(req *Request) []byte {
	var msg []byte
	field := func(num protowire.Number, sub []byte) {
		msg = appendMessageField(msg, num, e.wrap(sub))
	}
	switch {
	case req.Spec != nil:
		var m []byte
		m = appendVarintField(m, 1, uint64(req.Spec.ConnectorType))
		m = appendBytesField(m, 2, req.Spec.Config)
		field(1, m)
	case req.Discover != nil:
		var m []byte
		m = appendVarintField(m, 1, uint64(req.Discover.ConnectorType))
		m = appendBytesField(m, 2, req.Discover.Config)
		field(2, m)
	case req.Validate != nil:
		v := req.Validate
		m := appendStringField(nil, 1, v.Name)
		m = appendVarintField(m, 2, uint64(v.ConnectorType))
		m = appendBytesField(m, 3, v.Config)
		for _, b := range v.Bindings {
			bm := appendBytesField(nil, 1, b.ResourceConfig)
			bm = appendMessageField(bm, 2, e.collection(b.Collection))
			bm = appendVarintField(bm, 3, uint64(b.Backfill))
			m = appendMessageField(m, 4, e.wrap(bm))
		}
		m = e.optionalCapture(m, 5, v.LastCapture)
		m = appendStringField(m, 6, v.LastVersion)
		field(3, m)
	case req.Apply != nil:
		a := req.Apply
		m := e.optionalCapture(nil, 1, a.Capture)
		m = appendStringField(m, 2, a.Version)
		m = e.optionalCapture(m, 4, a.LastCapture)
		m = appendStringField(m, 5, a.LastVersion)
		field(4, m)
	case req.Open != nil:
		o := req.Open
		m := e.optionalCapture(nil, 1, o.Capture)
		m = appendStringField(m, 2, o.Version)
		if r := o.Range; r != nil {
			var rm []byte
			for _, f := range []struct {
				num protowire.Number
				v   uint32
			}{{2, r.KeyBegin}, {3, r.KeyEnd}, {4, r.RClockBegin}, {5, r.RClockEnd}} {
				if f.v != 0 {
					rm = protowire.AppendTag(rm, f.num, protowire.Fixed32Type)
					rm = protowire.AppendFixed32(rm, f.v)
				}
			}
			m = appendMessageField(m, 3, e.wrap(rm))
		}
		m = appendBytesField(m, 4, o.State)
		field(5, m)
	case req.Acknowledge != nil:
		field(6, appendVarintField(nil, 1, uint64(req.Acknowledge.Checkpoints)))
	}
	msg = e.wrap(msg)
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(msg))), msg...)
}

func (e protoEncoder) wrap(msg []byte) []byte {
	out := append([]byte(nil), e.extra...)
	out = append(out, msg...)
	return append(out, e.extra...)
}

func (e protoEncoder) optionalCapture(b []byte, num protowire.Number, c *CaptureSpec) []byte {
	if c == nil {
		return b
	}
	m := appendStringField(nil, 1, c.Name)
	m = appendVarintField(m, 2, uint64(c.ConnectorType))
	m = appendBytesField(m, 3, c.Config)
	for _, b := range c.Bindings {
		bm := appendBytesField(nil, 1, b.ResourceConfig)
		bm = appendStringsField(bm, 2, b.ResourcePath)
		bm = appendMessageField(bm, 3, e.collection(b.Collection))
		bm = appendVarintField(bm, 4, uint64(b.Backfill))
		bm = appendStringField(bm, 5, b.StateKey)
		m = appendMessageField(m, 4, e.wrap(bm))
	}
	m = appendVarintField(m, 5, uint64(c.IntervalSeconds))
	return appendMessageField(b, num, e.wrap(m))
}

func (e protoEncoder) collection(c CollectionSpec) []byte {
	m := appendStringField(nil, 1, c.Name)
	m = appendStringsField(m, 3, c.Key)
	m = appendStringField(m, 4, c.UUIDPtr)
	for _, p := range c.Projections {
		pm := appendStringField(nil, 1, p.Ptr)
		pm = appendStringField(pm, 2, p.Field)
		pm = appendBoolField(pm, 3, p.Explicit)
		pm = appendBoolField(pm, 4, p.IsPartitionKey)
		pm = appendBoolField(pm, 5, p.IsPrimaryKey)
		m = appendMessageField(m, 6, e.wrap(pm))
	}
	m = appendBytesField(m, 8, c.WriteSchema)
	m = appendBytesField(m, 11, c.ReadSchema)
	return e.wrap(m)
}

// jsonEncoder encodes requests as the runtime does, under either the JSON
// names or the proto field names, adding extra members to every object.
type jsonEncoder struct {
	protoNames bool
	extra      map[string]any
}

// object collects the members of one JSON object, omitting defaults.
type object map[string]any

func (e jsonEncoder) object() object {
	o := object{}
	for k, v := range e.extra {
		o[k] = v
	}
	return o
}

// set stores v under the JSON name or, if the encoder uses them, the proto
// name (the last of names), unless v is a default value.
func (e jsonEncoder) set(o object, v any, names ...string) {
	if v == nil || reflect.ValueOf(v).IsZero() {
		return
	}
	name := names[0]
	if e.protoNames {
		name = names[len(names)-1]
	}
	o[name] = v
}

// connectorTypeName spells the enum's values independently of
// ConnectorType.String, for the same reason.
func connectorTypeName(t ConnectorType) any {
	switch t {
	case 0:
		return nil
	case 7:
		return "IMAGE"
	case 8:
		return "LOCAL"
	}
	return t
}

func (e jsonEncoder) line(t testing.TB, req *Request) []byte {
	t.Helper()
	top := e.object()
	switch {
	case req.Spec != nil:
		m := e.object()
		e.set(m, connectorTypeName(req.Spec.ConnectorType), "connectorType", "connector_type")
		e.set(m, req.Spec.Config, "config", "config_json")
		top["spec"] = m
	case req.Discover != nil:
		m := e.object()
		e.set(m, connectorTypeName(req.Discover.ConnectorType), "connectorType", "connector_type")
		e.set(m, req.Discover.Config, "config", "config_json")
		top["discover"] = m
	case req.Validate != nil:
		v := req.Validate
		m := e.object()
		e.set(m, v.Name, "name")
		e.set(m, connectorTypeName(v.ConnectorType), "connectorType", "connector_type")
		e.set(m, v.Config, "config", "config_json")
		var bindings []object
		for _, b := range v.Bindings {
			bm := e.object()
			e.set(bm, b.ResourceConfig, "resourceConfig", "resource_config_json")
			bm["collection"] = e.collection(b.Collection)
			e.set(bm, b.Backfill, "backfill")
			bindings = append(bindings, bm)
		}
		e.set(m, bindings, "bindings")
		e.set(m, e.capture(v.LastCapture), "lastCapture", "last_capture")
		e.set(m, v.LastVersion, "lastVersion", "last_version")
		top["validate"] = m
	case req.Apply != nil:
		a := req.Apply
		m := e.object()
		e.set(m, e.capture(a.Capture), "capture")
		e.set(m, a.Version, "version")
		e.set(m, e.capture(a.LastCapture), "lastCapture", "last_capture")
		e.set(m, a.LastVersion, "lastVersion", "last_version")
		top["apply"] = m
	case req.Open != nil:
		o := req.Open
		m := e.object()
		e.set(m, e.capture(o.Capture), "capture")
		e.set(m, o.Version, "version")
		if r := o.Range; r != nil {
			rm := e.object()
			e.set(rm, r.KeyBegin, "keyBegin", "key_begin")
			e.set(rm, r.KeyEnd, "keyEnd", "key_end")
			e.set(rm, r.RClockBegin, "rClockBegin", "r_clock_begin")
			e.set(rm, r.RClockEnd, "rClockEnd", "r_clock_end")
			m["range"] = rm
		}
		e.set(m, o.State, "state", "state_json")
		top["open"] = m
	case req.Acknowledge != nil:
		m := e.object()
		e.set(m, req.Acknowledge.Checkpoints, "checkpoints")
		top["acknowledge"] = m
	}
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatalf("encoding JSON request: %v", err)
	}
	return append(b, '\n')
}

// capture returns nil for a nil spec, so that set omits it.
func (e jsonEncoder) capture(c *CaptureSpec) any {
	if c == nil {
		return nil
	}
	m := e.object()
	e.set(m, c.Name, "name")
	e.set(m, connectorTypeName(c.ConnectorType), "connectorType", "connector_type")
	e.set(m, c.Config, "config", "config_json")
	var bindings []object
	for _, b := range c.Bindings {
		bm := e.object()
		e.set(bm, b.ResourceConfig, "resourceConfig", "resource_config_json")
		e.set(bm, b.ResourcePath, "resourcePath", "resource_path")
		bm["collection"] = e.collection(b.Collection)
		e.set(bm, b.Backfill, "backfill")
		e.set(bm, b.StateKey, "stateKey", "state_key")
		bindings = append(bindings, bm)
	}
	e.set(m, bindings, "bindings")
	e.set(m, c.IntervalSeconds, "intervalSeconds", "interval_seconds")
	return m
}

func (e jsonEncoder) collection(c CollectionSpec) object {
	m := e.object()
	e.set(m, c.Name, "name")
	e.set(m, c.Key, "key")
	e.set(m, c.UUIDPtr, "uuidPtr", "uuid_ptr")
	var projections []object
	for _, p := range c.Projections {
		pm := e.object()
		e.set(pm, p.Ptr, "ptr")
		e.set(pm, p.Field, "field")
		e.set(pm, p.Explicit, "explicit")
		e.set(pm, p.IsPartitionKey, "isPartitionKey", "is_partition_key")
		e.set(pm, p.IsPrimaryKey, "isPrimaryKey", "is_primary_key")
		projections = append(projections, pm)
	}
	e.set(m, projections, "projections")
	e.set(m, c.WriteSchema, "writeSchema", "write_schema_json")
	e.set(m, c.ReadSchema, "readSchema", "read_schema_json")
	return m
}
