package protocol

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// maxFrameSize bounds a protobuf request. Real requests are far smaller; the
// bound exists so that a corrupt or misframed length is reported rather than
// read. Any JSON text beginning `{"` exceeds it when taken as a length, which
// is what lets Read recognise a runtime speaking JSON.
const maxFrameSize = 1 << 30

// Reader decodes requests from the runtime.
type Reader struct {
	codec Codec
	br    *bufio.Reader // Proto
	dec   *json.Decoder // JSON
}

// NewReader returns a Reader decoding requests from r in codec c.
func NewReader(r io.Reader, c Codec) *Reader {
	if c == JSON {
		return &Reader{codec: c, dec: json.NewDecoder(r)}
	}
	return &Reader{codec: c, br: bufio.NewReader(r)}
}

// Read returns the next request. It returns io.EOF, unwrapped, only when the
// input ends cleanly between messages. Any other failure leaves the input at
// an unspecified position, so the caller should stop reading.
func (r *Reader) Read() (*Request, error) {
	var (
		req *Request
		err error
	)
	switch r.codec {
	case Proto:
		var frame []byte
		if frame, err = r.readFrame(); err != nil {
			return nil, err
		}
		req, err = decodeProtoRequest(frame)
	case JSON:
		var line json.RawMessage
		if err = r.dec.Decode(&line); err == io.EOF {
			return nil, io.EOF
		} else if err != nil {
			return nil, fmt.Errorf("reading JSON request: %w", err)
		}
		req, err = decodeJSONRequest(line)
	default:
		return nil, unknownCodecError(r.codec)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %v request: %w", r.codec, err)
	}
	return req, nil
}

// readFrame returns the body of the next length-prefixed protobuf message.
func (r *Reader) readFrame() ([]byte, error) {
	var header [4]byte
	switch n, err := io.ReadFull(r.br, header[:]); {
	case err == io.EOF:
		return nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return nil, fmt.Errorf("reading protobuf request: input ended within a 4-byte length prefix (got %d bytes)%s",
			n, jsonHint(header[0]))
	case err != nil:
		return nil, fmt.Errorf("reading protobuf request: %w", err)
	}
	size := binary.LittleEndian.Uint32(header[:])
	if size > maxFrameSize {
		return nil, fmt.Errorf("reading protobuf request: length prefix announces %d bytes, more than the %d-byte limit%s",
			size, maxFrameSize, jsonHint(header[0]))
	}

	// Grow the body as bytes arrive instead of trusting the prefix with one
	// large allocation: a truncated stream then costs only what it delivered.
	const chunk = 1 << 20
	body := make([]byte, min(int(size), chunk))
	got := 0
	for {
		n, err := io.ReadFull(r.br, body[got:])
		got += n
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("reading protobuf request: input ended after %d of %d bytes of a message%s",
				got, size, jsonHint(header[0]))
		} else if err != nil {
			return nil, fmt.Errorf("reading protobuf request: %w", err)
		}
		if got == int(size) {
			return body, nil
		}
		grow := min(int(size)-got, len(body))
		body = slices.Grow(body, grow)[:len(body)+grow]
	}
}

// jsonHint explains the commonest cause of a bad frame: a runtime speaking
// JSON (as it does to local connectors unless told otherwise) to a connector
// expecting protobuf.
func jsonHint(first byte) string {
	if first != '{' {
		return ""
	}
	return `; the input looks like JSON: set FLOW_RUNTIME_CODEC=json, or configure the runtime to use protobuf`
}

// checkOneRequest enforces that a request sets exactly one message, as the
// protocol's oneof requires, so callers may switch on the first non-nil field.
func checkOneRequest(req *Request) error {
	var set []string
	for _, f := range []struct {
		name  string
		isSet bool
	}{
		{"spec", req.Spec != nil},
		{"discover", req.Discover != nil},
		{"validate", req.Validate != nil},
		{"apply", req.Apply != nil},
		{"open", req.Open != nil},
		{"acknowledge", req.Acknowledge != nil},
	} {
		if f.isSet {
			set = append(set, f.name)
		}
	}
	switch len(set) {
	case 1:
		return nil
	case 0:
		return errors.New("request has none of spec, discover, validate, apply, open or acknowledge")
	}
	return fmt.Errorf("request sets %s; want exactly one", strings.Join(set, " and "))
}
