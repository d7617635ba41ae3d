package protocol

import "encoding/json"

// Fields of type json.RawMessage hold embedded JSON exactly as the runtime
// sent it. On input, a field that is absent (or JSON null) is nil.
//
// A JSON request naming a ConnectorType this package does not know decodes
// as ConnectorTypeInvalid, so new runtime values don't break old connectors.

// Request is one message from the runtime. Read guarantees that exactly one
// field is set.
type Request struct {
	Spec        *SpecRequest
	Discover    *DiscoverRequest
	Validate    *ValidateRequest
	Apply       *ApplyRequest
	Open        *OpenRequest
	Acknowledge *AcknowledgeRequest
}

// SpecRequest asks for the connector's specification. It may carry no fields
// at all: the runtime sends an empty one at container start to check
// ProtocolVersion.
type SpecRequest struct {
	ConnectorType ConnectorType
	Config        json.RawMessage // possibly partial or absent
}

// DiscoverRequest asks for the bindings the endpoint could capture.
type DiscoverRequest struct {
	ConnectorType ConnectorType
	Config        json.RawMessage
}

// ValidateRequest asks the connector to check a proposed capture.
type ValidateRequest struct {
	Name          string
	ConnectorType ConnectorType
	Config        json.RawMessage
	Bindings      []ValidateBinding
	// LastCapture is the previously published spec, nil for a new task.
	LastCapture *CaptureSpec
	LastVersion string
}

// ValidateBinding is one proposed binding of a ValidateRequest.
type ValidateBinding struct {
	ResourceConfig json.RawMessage
	Collection     CollectionSpec
	Backfill       uint32
}

// ApplyRequest asks the connector to prepare the endpoint for a capture
// spec. It may be repeated for the same version.
type ApplyRequest struct {
	Capture *CaptureSpec
	Version string
	// LastCapture is the previously applied spec, nil the first time.
	LastCapture *CaptureSpec
	LastVersion string
}

// OpenRequest starts a capture session.
type OpenRequest struct {
	Capture *CaptureSpec
	Version string
	Range   *RangeSpec
	// State is the last committed connector state; {} for a new task.
	State json.RawMessage
}

// AcknowledgeRequest reports that the oldest Checkpoints unacknowledged
// checkpoints are durably committed. Older runtimes send 0, meaning 1.
type AcknowledgeRequest struct {
	Checkpoints uint32
}

// CaptureSpec is a built capture task (flow.CaptureSpec).
type CaptureSpec struct {
	Name            string
	ConnectorType   ConnectorType
	Config          json.RawMessage
	Bindings        []CaptureBinding
	IntervalSeconds uint32
}

// CaptureBinding is one binding of a CaptureSpec. Its index in
// CaptureSpec.Bindings is the binding number of captured documents.
type CaptureBinding struct {
	ResourceConfig json.RawMessage
	ResourcePath   []string
	Collection     CollectionSpec
	Backfill       uint32
	// StateKey names this binding's entry in the connector state. It changes
	// when Backfill is bumped, which is what restarts a backfill.
	StateKey string
}

// CollectionSpec is the part of a flow.CollectionSpec a capture needs.
type CollectionSpec struct {
	Name        string
	Key         []string // JSON pointers
	UUIDPtr     string
	Projections []Projection
	WriteSchema json.RawMessage
	ReadSchema  json.RawMessage
}

// Projection maps a document location to a flattened field name.
type Projection struct {
	Ptr            string
	Field          string
	Explicit       bool
	IsPartitionKey bool
	IsPrimaryKey   bool
}

// RangeSpec is the inclusive key and r-clock range a shard owns. An unsplit
// capture shard owns KeyBegin 0 through KeyEnd 0xFFFFFFFF.
type RangeSpec struct {
	KeyBegin    uint32
	KeyEnd      uint32
	RClockBegin uint32
	RClockEnd   uint32
}

// The JSON tags of the response types are the Flow wire names; encoding one
// with encoding/json yields exactly its JSON codec form.

// SpecResponse describes the connector. Protocol must be ProtocolVersion.
type SpecResponse struct {
	Protocol             uint32          `json:"protocol,omitempty"`
	ConfigSchema         json.RawMessage `json:"configSchema,omitempty"`
	ResourceConfigSchema json.RawMessage `json:"resourceConfigSchema,omitempty"`
	DocumentationURL     string          `json:"documentationUrl,omitempty"`
	// ResourcePathPointers are JSON pointers into a resource config whose
	// values form the binding's resource path.
	ResourcePathPointers []string `json:"resourcePathPointers,omitempty"`
}

// DiscoveredBinding is one capturable resource found by discovery.
type DiscoveredBinding struct {
	RecommendedName string          `json:"recommendedName,omitempty"`
	ResourceConfig  json.RawMessage `json:"resourceConfig,omitempty"`
	DocumentSchema  json.RawMessage `json:"documentSchema,omitempty"`
	Key             []string        `json:"key,omitempty"`
	Disable         bool            `json:"disable,omitempty"`
	ResourcePath    []string        `json:"resourcePath,omitempty"`
	// IsFallbackKey reports that Key is not a natural key of the resource.
	IsFallbackKey bool `json:"isFallbackKey,omitempty"`
}

// ValidatedBinding answers one ValidateBinding, in request order.
type ValidatedBinding struct {
	ResourcePath []string `json:"resourcePath,omitempty"`
}
