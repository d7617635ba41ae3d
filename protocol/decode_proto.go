package protocol

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Decoding follows protobuf's merge rules, so a message or field repeated on
// the wire behaves as it would with generated code: scalars take the last
// value, repeated fields append, and sub-messages merge.

// protoField is one field of a protobuf message as found on the wire.
type protoField struct {
	num   protowire.Number
	typ   protowire.Type
	value uint64 // VarintType, Fixed32Type, Fixed64Type
	bytes []byte // BytesType; aliases the frame
}

// walkProto calls fn for each field of the message b, which is named msg in
// errors. Fields fn does not recognise are skipped, whatever their wire type,
// because the runtime sends large sub-messages a connector never needs and
// adds fields over time.
func walkProto(msg string, b []byte, fn func(protoField) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%s: malformed field tag: %w", msg, protowire.ParseError(n))
		}
		b = b[n:]
		f := protoField{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.value, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.value = uint64(v)
		case protowire.Fixed64Type:
			f.value, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		default:
			// Groups are deprecated and absent from the Flow protocol; any
			// other type is corruption.
			return fmt.Errorf("%s field %d: unsupported wire type %d", msg, num, typ)
		}
		if n < 0 {
			return fmt.Errorf("%s field %d: malformed value: %w", msg, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return fmt.Errorf("%s field %d: %w", msg, num, err)
		}
	}
	return nil
}

func (f protoField) want(typ protowire.Type) error {
	if f.typ != typ {
		return fmt.Errorf("wire type %s, want %s", wireTypeName(f.typ), wireTypeName(typ))
	}
	return nil
}

func wireTypeName(typ protowire.Type) string {
	switch typ {
	case protowire.VarintType:
		return "varint"
	case protowire.Fixed32Type:
		return "i32"
	case protowire.Fixed64Type:
		return "i64"
	case protowire.BytesType:
		return "len"
	}
	return fmt.Sprint(int(typ))
}

func (f protoField) setUint32(dst *uint32) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = uint32(f.value)
	return nil
}

// setEnum stores an enum, which protobuf encodes as a sign-extended int32.
func (f protoField) setEnum(dst *int32) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = int32(f.value)
	return nil
}

func (f protoField) setBool(dst *bool) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = f.value != 0
	return nil
}

func (f protoField) setFixed32(dst *uint32) error {
	if err := f.want(protowire.Fixed32Type); err != nil {
		return err
	}
	*dst = uint32(f.value)
	return nil
}

func (f protoField) setString(dst *string) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	*dst = string(f.bytes)
	return nil
}

func (f protoField) appendString(dst *[]string) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	*dst = append(*dst, string(f.bytes))
	return nil
}

// setRaw stores embedded JSON. It aliases the frame, which Read allocates
// afresh for every request.
func (f protoField) setRaw(dst *json.RawMessage) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	if len(f.bytes) == 0 {
		*dst = nil
	} else {
		*dst = f.bytes
	}
	return nil
}

// mergeMessage decodes the sub-message in f into *dst, allocating it on first
// sight so that an empty sub-message is still present.
func mergeMessage[T any](f protoField, dst **T, decode func([]byte, *T) error) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	if *dst == nil {
		*dst = new(T)
	}
	return decode(f.bytes, *dst)
}

// mergeInto decodes the sub-message in f into a struct held by value.
func mergeInto[T any](f protoField, dst *T, decode func([]byte, *T) error) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	return decode(f.bytes, dst)
}

// appendMessage decodes the sub-message in f as a new element of *dst.
func appendMessage[T any](f protoField, dst *[]T, decode func([]byte, *T) error) error {
	if err := f.want(protowire.BytesType); err != nil {
		return err
	}
	var v T
	if err := decode(f.bytes, &v); err != nil {
		return fmt.Errorf("element %d: %w", len(*dst), err)
	}
	*dst = append(*dst, v)
	return nil
}

func decodeProtoRequest(b []byte) (*Request, error) {
	var req Request
	err := walkProto("capture.Request", b, func(f protoField) error {
		switch f.num {
		case 1:
			return mergeMessage(f, &req.Spec, decodeProtoSpec)
		case 2:
			return mergeMessage(f, &req.Discover, decodeProtoDiscover)
		case 3:
			return mergeMessage(f, &req.Validate, decodeProtoValidate)
		case 4:
			return mergeMessage(f, &req.Apply, decodeProtoApply)
		case 5:
			return mergeMessage(f, &req.Open, decodeProtoOpen)
		case 6:
			return mergeMessage(f, &req.Acknowledge, decodeProtoAcknowledge)
		}
		return nil // includes $internal (100), which connectors must ignore
	})
	if err == nil {
		err = checkOneRequest(&req)
	}
	if err != nil {
		return nil, err
	}
	return &req, nil
}

func decodeProtoSpec(b []byte, m *SpecRequest) error {
	return walkProto("capture.Request.Spec", b, func(f protoField) error {
		switch f.num {
		case 1:
			return f.setEnum(&m.ConnectorType)
		case 2:
			return f.setRaw(&m.Config)
		}
		return nil
	})
}

func decodeProtoDiscover(b []byte, m *DiscoverRequest) error {
	return walkProto("capture.Request.Discover", b, func(f protoField) error {
		switch f.num {
		case 1:
			return f.setEnum(&m.ConnectorType)
		case 2:
			return f.setRaw(&m.Config)
		}
		return nil
	})
}

func decodeProtoValidate(b []byte, m *ValidateRequest) error {
	return walkProto("capture.Request.Validate", b, func(f protoField) error {
		switch f.num {
		case 1:
			return f.setString(&m.Name)
		case 2:
			return f.setEnum(&m.ConnectorType)
		case 3:
			return f.setRaw(&m.Config)
		case 4:
			return appendMessage(f, &m.Bindings, decodeProtoValidateBinding)
		case 5:
			return mergeMessage(f, &m.LastCapture, decodeProtoCaptureSpec)
		case 6:
			return f.setString(&m.LastVersion)
		}
		return nil
	})
}

func decodeProtoValidateBinding(b []byte, m *ValidateBinding) error {
	return walkProto("capture.Request.Validate.Binding", b, func(f protoField) error {
		switch f.num {
		case 1:
			return f.setRaw(&m.ResourceConfig)
		case 2:
			return mergeInto(f, &m.Collection, decodeProtoCollection)
		case 3:
			return f.setUint32(&m.Backfill)
		}
		return nil
	})
}

func decodeProtoApply(b []byte, m *ApplyRequest) error {
	return walkProto("capture.Request.Apply", b, func(f protoField) error {
		switch f.num {
		case 1:
			return mergeMessage(f, &m.Capture, decodeProtoCaptureSpec)
		case 2:
			return f.setString(&m.Version)
		case 4:
			return mergeMessage(f, &m.LastCapture, decodeProtoCaptureSpec)
		case 5:
			return f.setString(&m.LastVersion)
		}
		return nil
	})
}

func decodeProtoOpen(b []byte, m *OpenRequest) error {
	return walkProto("capture.Request.Open", b, func(f protoField) error {
		switch f.num {
		case 1:
			return mergeMessage(f, &m.Capture, decodeProtoCaptureSpec)
		case 2:
			return f.setString(&m.Version)
		case 3:
			return mergeMessage(f, &m.Range, decodeProtoRange)
		case 4:
			return f.setRaw(&m.State)
		}
		return nil
	})
}

func decodeProtoAcknowledge(b []byte, m *AcknowledgeRequest) error {
	return walkProto("capture.Request.Acknowledge", b, func(f protoField) error {
		if f.num == 1 {
			return f.setUint32(&m.Checkpoints)
		}
		return nil
	})
}

func decodeProtoCaptureSpec(b []byte, m *CaptureSpec) error {
	return walkProto("flow.CaptureSpec", b, func(f protoField) error {
		switch f.num {
		case 1:
			return f.setString(&m.Name)
		case 2:
			return f.setEnum(&m.ConnectorType)
		case 3:
			return f.setRaw(&m.Config)
		case 4:
			return appendMessage(f, &m.Bindings, decodeProtoCaptureBinding)
		case 5:
			return f.setUint32(&m.IntervalSeconds)
		}
		return nil
	})
}

func decodeProtoCaptureBinding(b []byte, m *CaptureBinding) error {
	return walkProto("flow.CaptureSpec.Binding", b, func(f protoField) error {
		switch f.num {
		case 1:
			return f.setRaw(&m.ResourceConfig)
		case 2:
			return f.appendString(&m.ResourcePath)
		case 3:
			return mergeInto(f, &m.Collection, decodeProtoCollection)
		case 4:
			return f.setUint32(&m.Backfill)
		case 5:
			return f.setString(&m.StateKey)
		}
		return nil
	})
}

func decodeProtoCollection(b []byte, m *CollectionSpec) error {
	return walkProto("flow.CollectionSpec", b, func(f protoField) error {
		switch f.num {
		case 1:
			return f.setString(&m.Name)
		case 3:
			return f.appendString(&m.Key)
		case 4:
			return f.setString(&m.UUIDPtr)
		case 6:
			return appendMessage(f, &m.Projections, decodeProtoProjection)
		case 8:
			return f.setRaw(&m.WriteSchema)
		case 11:
			return f.setRaw(&m.ReadSchema)
		}
		return nil
	})
}

func decodeProtoProjection(b []byte, m *Projection) error {
	return walkProto("flow.Projection", b, func(f protoField) error {
		switch f.num {
		case 1:
			return f.setString(&m.Ptr)
		case 2:
			return f.setString(&m.Field)
		case 3:
			return f.setBool(&m.Explicit)
		case 4:
			return f.setBool(&m.IsPartitionKey)
		case 5:
			return f.setBool(&m.IsPrimaryKey)
		}
		return nil
	})
}

func decodeProtoRange(b []byte, m *RangeSpec) error {
	return walkProto("flow.RangeSpec", b, func(f protoField) error {
		switch f.num {
		case 2:
			return f.setFixed32(&m.KeyBegin)
		case 3:
			return f.setFixed32(&m.KeyEnd)
		case 4:
			return f.setFixed32(&m.RClockBegin)
		case 5:
			return f.setFixed32(&m.RClockEnd)
		}
		return nil
	})
}
