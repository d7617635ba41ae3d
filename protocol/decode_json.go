package protocol

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// JSON requests follow proto3's JSON mapping as the runtime produces it:
// every field may be spelled with its JSON name or its proto field name
// ("config" or "config_json"), omitted fields and null mean the default,
// unknown keys are ignored, and fields ending in _json hold embedded JSON.

// jsonDecoder decodes one JSON request. It keeps the first error met, so the
// per-message functions below read as plain lists of fields.
type jsonDecoder struct{ err error }

func (d *jsonDecoder) fail(path, problem string, err error) {
	if d.err != nil {
		return
	}
	if path == "" {
		path = "request"
	}
	d.err = fmt.Errorf("%s: %s: %w", path, problem, err)
}

// object parses raw as a JSON object found at path.
func (d *jsonDecoder) object(path string, raw json.RawMessage) jsonObject {
	o := jsonObject{d: d, path: path}
	if err := json.Unmarshal(raw, &o.members); err != nil {
		d.fail(path, "want a JSON object", err)
	}
	return o
}

// jsonObject is a JSON object whose members are decoded on demand, which is
// what lets a field be looked up under either of its names.
type jsonObject struct {
	d       *jsonDecoder
	path    string // for errors, e.g. "open.capture.bindings[2]"
	members map[string]json.RawMessage
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// member returns the value of the first of names that o holds, and the name
// it was found under. JSON null counts as absent.
func (o jsonObject) member(names ...string) (json.RawMessage, string) {
	for _, name := range names {
		if v, ok := o.members[name]; ok && string(v) != "null" {
			return v, name
		}
	}
	return nil, ""
}

func (o jsonObject) decode(name string, v json.RawMessage, dst any, problem string) {
	if err := json.Unmarshal(v, dst); err != nil {
		o.d.fail(joinPath(o.path, name), problem, err)
	}
}

// raw returns an embedded JSON value verbatim.
func (o jsonObject) raw(names ...string) json.RawMessage {
	v, _ := o.member(names...)
	return v
}

func (o jsonObject) str(names ...string) string {
	var s string
	if v, name := o.member(names...); v != nil {
		o.decode(name, v, &s, "want a string")
	}
	return s
}

func (o jsonObject) flag(names ...string) bool {
	var b bool
	if v, name := o.member(names...); v != nil {
		o.decode(name, v, &b, "want true or false")
	}
	return b
}

func (o jsonObject) strList(names ...string) []string {
	var list []string
	if v, name := o.member(names...); v != nil {
		o.decode(name, v, &list, "want an array of strings")
	}
	if len(list) == 0 {
		return nil // as the protobuf decoder leaves it
	}
	return list
}

// u32 decodes a uint32, which proto3 JSON writes as a number but also
// accepts as a decimal string.
func (o jsonObject) u32(names ...string) uint32 {
	v, name := o.member(names...)
	if v == nil {
		return 0
	}
	text := string(v)
	if v[0] == '"' {
		o.decode(name, v, &text, "want an unsigned 32-bit integer")
	}
	n, err := strconv.ParseUint(text, 10, 32)
	if err != nil {
		o.d.fail(joinPath(o.path, name), "want an unsigned 32-bit integer", err)
	}
	return uint32(n)
}

// connectorType decodes a flow.CaptureSpec.ConnectorType, written as its
// name or, less often, its number.
func (o jsonObject) connectorType(names ...string) ConnectorType {
	v, name := o.member(names...)
	if v == nil {
		return ConnectorTypeInvalid
	}
	if v[0] != '"' {
		n, err := strconv.ParseInt(string(v), 10, 32)
		if err != nil {
			o.d.fail(joinPath(o.path, name), "want a connector type name or number", err)
		}
		return ConnectorType(n)
	}
	var typeName string
	o.decode(name, v, &typeName, "want a connector type name or number")
	return connectorTypeNamed(typeName)
}

// object returns the sub-message under names, if present.
func (o jsonObject) object(names ...string) (jsonObject, bool) {
	v, name := o.member(names...)
	if v == nil {
		return jsonObject{}, false
	}
	return o.d.object(joinPath(o.path, name), v), true
}

// objects returns the repeated sub-message under names.
func (o jsonObject) objects(names ...string) []jsonObject {
	v, name := o.member(names...)
	if v == nil {
		return nil
	}
	path := joinPath(o.path, name)
	var elems []json.RawMessage
	if err := json.Unmarshal(v, &elems); err != nil {
		o.d.fail(path, "want an array of objects", err)
		return nil
	}
	objects := make([]jsonObject, len(elems))
	for i, elem := range elems {
		objects[i] = o.d.object(fmt.Sprintf("%s[%d]", path, i), elem)
	}
	return objects
}

func decodeJSONRequest(line json.RawMessage) (*Request, error) {
	d := new(jsonDecoder)
	root := d.object("", line)
	var req Request
	if o, ok := root.object("spec"); ok {
		req.Spec = &SpecRequest{
			ConnectorType: o.connectorType("connectorType", "connector_type"),
			Config:        o.raw("config", "config_json"),
		}
	}
	if o, ok := root.object("discover"); ok {
		req.Discover = &DiscoverRequest{
			ConnectorType: o.connectorType("connectorType", "connector_type"),
			Config:        o.raw("config", "config_json"),
		}
	}
	if o, ok := root.object("validate"); ok {
		req.Validate = jsonValidate(o)
	}
	if o, ok := root.object("apply"); ok {
		req.Apply = &ApplyRequest{
			Capture:     jsonCaptureSpec(o, "capture"),
			Version:     o.str("version"),
			LastCapture: jsonCaptureSpec(o, "lastCapture", "last_capture"),
			LastVersion: o.str("lastVersion", "last_version"),
		}
	}
	if o, ok := root.object("open"); ok {
		req.Open = &OpenRequest{
			Capture: jsonCaptureSpec(o, "capture"),
			Version: o.str("version"),
			Range:   jsonRange(o),
			State:   o.raw("state", "state_json"),
		}
	}
	if o, ok := root.object("acknowledge"); ok {
		req.Acknowledge = &AcknowledgeRequest{Checkpoints: o.u32("checkpoints")}
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := checkOneRequest(&req); err != nil {
		return nil, err
	}
	return &req, nil
}

func jsonValidate(o jsonObject) *ValidateRequest {
	m := &ValidateRequest{
		Name:          o.str("name"),
		ConnectorType: o.connectorType("connectorType", "connector_type"),
		Config:        o.raw("config", "config_json"),
		LastCapture:   jsonCaptureSpec(o, "lastCapture", "last_capture"),
		LastVersion:   o.str("lastVersion", "last_version"),
	}
	for _, b := range o.objects("bindings") {
		m.Bindings = append(m.Bindings, ValidateBinding{
			ResourceConfig: b.raw("resourceConfig", "resource_config_json"),
			Collection:     jsonCollection(b),
			Backfill:       b.u32("backfill"),
		})
	}
	return m
}

// jsonCaptureSpec decodes the capture spec under names, nil when absent.
func jsonCaptureSpec(parent jsonObject, names ...string) *CaptureSpec {
	o, ok := parent.object(names...)
	if !ok {
		return nil
	}
	m := &CaptureSpec{
		Name:            o.str("name"),
		ConnectorType:   o.connectorType("connectorType", "connector_type"),
		Config:          o.raw("config", "config_json"),
		IntervalSeconds: o.u32("intervalSeconds", "interval_seconds"),
	}
	for _, b := range o.objects("bindings") {
		m.Bindings = append(m.Bindings, CaptureBinding{
			ResourceConfig: b.raw("resourceConfig", "resource_config_json"),
			ResourcePath:   b.strList("resourcePath", "resource_path"),
			Collection:     jsonCollection(b),
			Backfill:       b.u32("backfill"),
			StateKey:       b.str("stateKey", "state_key"),
		})
	}
	return m
}

// jsonCollection decodes the collection of a binding; absent, it is zero.
func jsonCollection(binding jsonObject) CollectionSpec {
	o, ok := binding.object("collection")
	if !ok {
		return CollectionSpec{}
	}
	m := CollectionSpec{
		Name:        o.str("name"),
		Key:         o.strList("key"),
		UUIDPtr:     o.str("uuidPtr", "uuid_ptr"),
		WriteSchema: o.raw("writeSchema", "write_schema_json"),
		ReadSchema:  o.raw("readSchema", "read_schema_json"),
	}
	for _, p := range o.objects("projections") {
		m.Projections = append(m.Projections, Projection{
			Ptr:            p.str("ptr"),
			Field:          p.str("field"),
			Explicit:       p.flag("explicit"),
			IsPartitionKey: p.flag("isPartitionKey", "is_partition_key"),
			IsPrimaryKey:   p.flag("isPrimaryKey", "is_primary_key"),
		})
	}
	return m
}

func jsonRange(open jsonObject) *RangeSpec {
	o, ok := open.object("range")
	if !ok {
		return nil
	}
	return &RangeSpec{
		KeyBegin:    o.u32("keyBegin", "key_begin"),
		KeyEnd:      o.u32("keyEnd", "key_end"),
		RClockBegin: o.u32("rClockBegin", "r_clock_begin"),
		RClockEnd:   o.u32("rClockEnd", "r_clock_end"),
	}
}
