// Package protocol speaks the Estuary Flow capture protocol: it reads the
// runtime's requests from stdin and writes the connector's responses to
// stdout.
//
// Two codecs exist. Proto frames every message as a 4-byte little-endian
// length followed by a protobuf capture.Request or capture.Response. JSON
// writes one compact JSON object per line; fields holding embedded JSON
// (configs, schemas, documents, state) appear as JSON values, not strings.
// Both codecs are hand-written against the published field numbers and JSON
// names, so only the fields a capture connector needs are modelled; the rest
// are skipped on input and never produced on output.
package protocol

import "fmt"

// ProtocolVersion is the capture protocol version a connector must report in
// its spec response; the runtime refuses to start a connector reporting any
// other value.
const ProtocolVersion = 3032023

// Codec selects the wire encoding of requests and responses.
type Codec int

const (
	// Proto is length-prefixed protobuf, the runtime's default for image
	// connectors.
	Proto Codec = iota
	// JSON is newline-delimited JSON.
	JSON
)

// String returns the codec's FLOW_RUNTIME_CODEC spelling.
func (c Codec) String() string {
	switch c {
	case Proto:
		return "proto"
	case JSON:
		return "json"
	}
	return fmt.Sprintf("Codec(%d)", int(c))
}

// CodecFromEnv parses the value of the FLOW_RUNTIME_CODEC environment
// variable. An unset (empty) variable means Proto, matching the runtime,
// which speaks protobuf to images that don't ask for JSON.
func CodecFromEnv(value string) (Codec, error) {
	switch value {
	case "", "proto":
		return Proto, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("invalid FLOW_RUNTIME_CODEC %q: must be \"proto\" or \"json\" (unset means \"proto\")", value)
}

func unknownCodecError(c Codec) error {
	return fmt.Errorf("protocol: unknown codec %v; use protocol.Proto or protocol.JSON", c)
}
