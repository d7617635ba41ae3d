package protocol

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Writer encodes responses to the runtime. It buffers its output: every
// method except WriteCaptured flushes, because the runtime must see those
// messages (a checkpoint above all) without waiting for more output, while
// captured documents may wait for the checkpoint that commits them.
//
// Embedded JSON passed to the non-captured methods is validated, and
// compacted by the JSON codec, whose lines must not contain newlines.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	codec Codec
	buf   *bufio.Writer
	enc   *json.Encoder // JSON
	// header holds the bytes WriteCaptured writes around a document, so that
	// it needs no allocation.
	header [64]byte
}

// NewWriter returns a Writer encoding responses to w in codec c.
func NewWriter(w io.Writer, c Codec) *Writer {
	wr := &Writer{codec: c, buf: bufio.NewWriterSize(w, 1<<20)}
	if c == JSON {
		wr.enc = json.NewEncoder(wr.buf)
		// The runtime reads JSON, not HTML; escaping <, > and & would only
		// rewrite strings inside embedded documents.
		wr.enc.SetEscapeHTML(false)
	}
	return wr
}

// Flush writes any buffered output.
func (w *Writer) Flush() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("flushing responses: %w", err)
	}
	return nil
}

// WriteCaptured writes a captured document for the binding with index
// binding in the Open request. doc must be a compact JSON object: it is
// embedded as given, without validation, and a newline within it would break
// the JSON codec's framing. The output is buffered, not flushed.
func (w *Writer) WriteCaptured(binding uint32, doc []byte) error {
	if len(doc) == 0 {
		return fmt.Errorf("writing captured document of binding %d: document is empty", binding)
	}
	var header []byte
	trailer := ""
	switch w.codec {
	case Proto:
		captured := protowire.SizeTag(responseCapturedDocJSON) + protowire.SizeBytes(len(doc))
		if binding != 0 {
			captured += protowire.SizeTag(responseCapturedBinding) + protowire.SizeVarint(uint64(binding))
		}
		size := protowire.SizeTag(responseCaptured) + protowire.SizeBytes(captured)
		if uint64(size) > math.MaxUint32 {
			return fmt.Errorf("writing captured document of binding %d: %d bytes exceed the 4 GiB message limit", binding, size)
		}
		header = binary.LittleEndian.AppendUint32(w.header[:0], uint32(size))
		header = protowire.AppendTag(header, responseCaptured, protowire.BytesType)
		header = protowire.AppendVarint(header, uint64(captured))
		header = appendVarintField(header, responseCapturedBinding, uint64(binding))
		header = protowire.AppendTag(header, responseCapturedDocJSON, protowire.BytesType)
		header = protowire.AppendVarint(header, uint64(len(doc)))
	case JSON:
		header = append(w.header[:0], `{"captured":{`...)
		if binding != 0 {
			header = append(header, `"binding":`...)
			header = strconv.AppendUint(header, uint64(binding), 10)
			header = append(header, ',')
		}
		header = append(header, `"doc":`...)
		trailer = "}}\n"
	default:
		return unknownCodecError(w.codec)
	}
	// bufio.Writer remembers a failed write and reports it from every later
	// one, so checking the last write suffices.
	w.buf.Write(header) //nolint:errcheck // see above
	w.buf.Write(doc)    //nolint:errcheck // see above
	if _, err := w.buf.WriteString(trailer); err != nil {
		return fmt.Errorf("writing captured document of binding %d: %w", binding, err)
	}
	return nil
}

// WriteSpec writes the connector's specification.
func (w *Writer) WriteSpec(spec *SpecResponse) error {
	if spec == nil {
		return errors.New("writing spec response: SpecResponse is nil")
	}
	if err := errors.Join(
		checkJSON("configSchema", spec.ConfigSchema),
		checkJSON("resourceConfigSchema", spec.ResourceConfigSchema),
	); err != nil {
		return fmt.Errorf("writing spec response: %w", err)
	}
	if w.codec == JSON {
		return w.writeJSON("spec", &jsonResponse{Spec: spec})
	}
	msg := appendVarintField(nil, responseSpecProtocol, uint64(spec.Protocol))
	msg = appendBytesField(msg, responseSpecConfigSchemaJSON, spec.ConfigSchema)
	msg = appendBytesField(msg, responseSpecResourceConfigSchemaJSON, spec.ResourceConfigSchema)
	msg = appendStringField(msg, responseSpecDocumentationURL, spec.DocumentationURL)
	msg = appendStringsField(msg, responseSpecResourcePathPointers, spec.ResourcePathPointers)
	return w.writeProto("spec", responseSpec, msg)
}

// WriteDiscovered writes the bindings found by discovery, which may be none.
func (w *Writer) WriteDiscovered(bindings []DiscoveredBinding) error {
	for i, b := range bindings {
		if err := errors.Join(
			checkJSON("resourceConfig", b.ResourceConfig),
			checkJSON("documentSchema", b.DocumentSchema),
		); err != nil {
			return fmt.Errorf("writing discovered response: binding %d (%q): %w", i, b.RecommendedName, err)
		}
	}
	if w.codec == JSON {
		return w.writeJSON("discovered", &jsonResponse{Discovered: &jsonDiscovered{bindings}})
	}
	var msg []byte
	for _, b := range bindings {
		binding := appendStringField(nil, responseDiscoveredBindingRecommendedName, b.RecommendedName)
		binding = appendBytesField(binding, responseDiscoveredBindingResourceConfigJSON, b.ResourceConfig)
		binding = appendBytesField(binding, responseDiscoveredBindingDocumentSchemaJSON, b.DocumentSchema)
		binding = appendStringsField(binding, responseDiscoveredBindingKey, b.Key)
		binding = appendBoolField(binding, responseDiscoveredBindingDisable, b.Disable)
		binding = appendStringsField(binding, responseDiscoveredBindingResourcePath, b.ResourcePath)
		binding = appendBoolField(binding, responseDiscoveredBindingIsFallbackKey, b.IsFallbackKey)
		msg = appendMessageField(msg, responseDiscoveredBindings, binding)
	}
	return w.writeProto("discovered", responseDiscovered, msg)
}

// WriteValidated writes one validated binding per requested binding, in
// request order.
func (w *Writer) WriteValidated(bindings []ValidatedBinding) error {
	if w.codec == JSON {
		return w.writeJSON("validated", &jsonResponse{Validated: &jsonValidated{bindings}})
	}
	var msg []byte
	for _, b := range bindings {
		binding := appendStringsField(nil, responseValidatedBindingResourcePath, b.ResourcePath)
		msg = appendMessageField(msg, responseValidatedBindings, binding)
	}
	return w.writeProto("validated", responseValidated, msg)
}

// WriteApplied answers an apply request. An empty actionDescription means
// nothing was changed.
func (w *Writer) WriteApplied(actionDescription string) error {
	if w.codec == JSON {
		return w.writeJSON("applied", &jsonResponse{Applied: &jsonApplied{actionDescription}})
	}
	return w.writeProto("applied", responseApplied, appendStringField(nil, responseAppliedActionDescription, actionDescription))
}

// WriteOpened answers an open request. With explicitAcks the runtime sends an
// AcknowledgeRequest as checkpoints commit.
func (w *Writer) WriteOpened(explicitAcks bool) error {
	if w.codec == JSON {
		return w.writeJSON("opened", &jsonResponse{Opened: &jsonOpened{explicitAcks}})
	}
	return w.writeProto("opened", responseOpened, appendBoolField(nil, responseOpenedExplicitAcknowledgements, explicitAcks))
}

// WriteCheckpoint commits the documents captured since the last checkpoint,
// together with a connector state update: an RFC 7396 merge patch of the
// state when mergePatch is true, otherwise the whole new state. A checkpoint
// that changes no state passes {} with mergePatch true.
func (w *Writer) WriteCheckpoint(updated []byte, mergePatch bool) error {
	if len(updated) == 0 {
		return errors.New("writing checkpoint: state update is empty; pass {} with mergePatch for a checkpoint that changes no state")
	}
	if err := checkJSON("state update", updated); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	if w.codec == JSON {
		return w.writeJSON("checkpoint", &jsonResponse{Checkpoint: &jsonCheckpoint{
			State: jsonConnectorState{Updated: updated, MergePatch: mergePatch},
		}})
	}
	state := appendBytesField(nil, connectorStateUpdatedJSON, updated)
	state = appendBoolField(state, connectorStateMergePatch, mergePatch)
	return w.writeProto("checkpoint", responseCheckpoint, appendMessageField(nil, responseCheckpointState, state))
}

// WriteSourcedSchema reports the JSON schema of binding as the source
// describes it. Like a document, it takes effect at the next checkpoint.
func (w *Writer) WriteSourcedSchema(binding uint32, schema []byte) error {
	if len(schema) == 0 {
		return fmt.Errorf("writing sourced schema of binding %d: schema is empty", binding)
	}
	if err := checkJSON("schema", schema); err != nil {
		return fmt.Errorf("writing sourced schema of binding %d: %w", binding, err)
	}
	if w.codec == JSON {
		return w.writeJSON("sourcedSchema", &jsonResponse{SourcedSchema: &jsonSourcedSchema{binding, schema}})
	}
	msg := appendVarintField(nil, responseSourcedSchemaBinding, uint64(binding))
	msg = appendBytesField(msg, responseSourcedSchemaSchemaJSON, schema)
	return w.writeProto("sourcedSchema", responseSourcedSchema, msg)
}

// checkJSON reports a field holding something other than JSON, naming it, so
// that the connector's bug surfaces here rather than as a runtime parse error.
func checkJSON(field string, raw []byte) error {
	if len(raw) > 0 && !json.Valid(raw) {
		return fmt.Errorf("%s is not valid JSON", field)
	}
	return nil
}

// writeProto frames msg as field num of a capture.Response and flushes it.
func (w *Writer) writeProto(what string, num protowire.Number, msg []byte) error {
	if w.codec != Proto {
		return unknownCodecError(w.codec)
	}
	size := protowire.SizeTag(num) + protowire.SizeBytes(len(msg))
	if uint64(size) > math.MaxUint32 {
		return fmt.Errorf("writing %s response: %d bytes exceed the 4 GiB message limit", what, size)
	}
	header := binary.LittleEndian.AppendUint32(w.header[:0], uint32(size))
	header = protowire.AppendTag(header, num, protowire.BytesType)
	header = protowire.AppendVarint(header, uint64(len(msg)))
	// A failed write is remembered, and reported by Flush.
	w.buf.Write(header) //nolint:errcheck // see above
	w.buf.Write(msg)    //nolint:errcheck // see above
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("writing %s response: %w", what, err)
	}
	return nil
}

// writeJSON writes msg as one line and flushes it. encoding/json compacts
// the embedded JSON fields, so the line holds no newline but its last.
func (w *Writer) writeJSON(what string, msg *jsonResponse) error {
	// Encode marshals fully before writing, so a failure leaves no partial
	// line behind.
	if err := w.enc.Encode(msg); err != nil {
		return fmt.Errorf("writing %s response: %w", what, err)
	}
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("writing %s response: %w", what, err)
	}
	return nil
}

// jsonResponse is a capture.Response in the JSON codec, less captured
// documents, which WriteCaptured writes by hand.
type jsonResponse struct {
	Spec          *SpecResponse      `json:"spec,omitempty"`
	Discovered    *jsonDiscovered    `json:"discovered,omitempty"`
	Validated     *jsonValidated     `json:"validated,omitempty"`
	Applied       *jsonApplied       `json:"applied,omitempty"`
	Opened        *jsonOpened        `json:"opened,omitempty"`
	Checkpoint    *jsonCheckpoint    `json:"checkpoint,omitempty"`
	SourcedSchema *jsonSourcedSchema `json:"sourcedSchema,omitempty"`
}

type jsonDiscovered struct {
	Bindings []DiscoveredBinding `json:"bindings,omitempty"`
}

type jsonValidated struct {
	Bindings []ValidatedBinding `json:"bindings,omitempty"`
}

type jsonApplied struct {
	ActionDescription string `json:"actionDescription,omitempty"`
}

type jsonOpened struct {
	ExplicitAcknowledgements bool `json:"explicitAcknowledgements,omitempty"`
}

type jsonCheckpoint struct {
	State jsonConnectorState `json:"state"`
}

type jsonConnectorState struct {
	Updated    json.RawMessage `json:"updated"`
	MergePatch bool            `json:"mergePatch,omitempty"`
}

type jsonSourcedSchema struct {
	Binding uint32          `json:"binding,omitempty"`
	Schema  json.RawMessage `json:"documentSchema"`
}

// The append helpers below omit default values, as proto3 does; only
// sub-messages are always written, since their presence is meaningful.

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBoolField(b []byte, num protowire.Number, v bool) []byte {
	return appendVarintField(b, num, protowire.EncodeBool(v))
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStringField(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendStringsField appends a repeated string field, one element per entry,
// empty strings included.
func appendStringsField(b []byte, num protowire.Number, list []string) []byte {
	for _, s := range list {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

func appendMessageField(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}
