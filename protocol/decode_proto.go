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
func setEnum[E ~int32](f protoField, dst *E) error {
	if err := f.want(protowire.VarintType); err != nil {
		return err
	}
	*dst = E(int32(f.value))
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
		case requestSpec:
			return mergeMessage(f, &req.Spec, decodeProtoSpec)
		case requestDiscover:
			return mergeMessage(f, &req.Discover, decodeProtoDiscover)
		case requestValidate:
			return mergeMessage(f, &req.Validate, decodeProtoValidate)
		case requestApply:
			return mergeMessage(f, &req.Apply, decodeProtoApply)
		case requestOpen:
			return mergeMessage(f, &req.Open, decodeProtoOpen)
		case requestAcknowledge:
			return mergeMessage(f, &req.Acknowledge, decodeProtoAcknowledge)
		}
		return nil // includes $internal, which connectors must ignore
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
		case requestSpecConnectorType:
			return setEnum(f, &m.ConnectorType)
		case requestSpecConfigJSON:
			return f.setRaw(&m.Config)
		}
		return nil
	})
}

func decodeProtoDiscover(b []byte, m *DiscoverRequest) error {
	return walkProto("capture.Request.Discover", b, func(f protoField) error {
		switch f.num {
		case requestDiscoverConnectorType:
			return setEnum(f, &m.ConnectorType)
		case requestDiscoverConfigJSON:
			return f.setRaw(&m.Config)
		}
		return nil
	})
}

func decodeProtoValidate(b []byte, m *ValidateRequest) error {
	return walkProto("capture.Request.Validate", b, func(f protoField) error {
		switch f.num {
		case requestValidateName:
			return f.setString(&m.Name)
		case requestValidateConnectorType:
			return setEnum(f, &m.ConnectorType)
		case requestValidateConfigJSON:
			return f.setRaw(&m.Config)
		case requestValidateBindings:
			return appendMessage(f, &m.Bindings, decodeProtoValidateBinding)
		case requestValidateLastCapture:
			return mergeMessage(f, &m.LastCapture, decodeProtoCaptureSpec)
		case requestValidateLastVersion:
			return f.setString(&m.LastVersion)
		}
		return nil
	})
}

func decodeProtoValidateBinding(b []byte, m *ValidateBinding) error {
	return walkProto("capture.Request.Validate.Binding", b, func(f protoField) error {
		switch f.num {
		case requestValidateBindingResourceConfigJSON:
			return f.setRaw(&m.ResourceConfig)
		case requestValidateBindingCollection:
			return mergeInto(f, &m.Collection, decodeProtoCollection)
		case requestValidateBindingBackfill:
			return f.setUint32(&m.Backfill)
		}
		return nil
	})
}

func decodeProtoApply(b []byte, m *ApplyRequest) error {
	return walkProto("capture.Request.Apply", b, func(f protoField) error {
		switch f.num {
		case requestApplyCapture:
			return mergeMessage(f, &m.Capture, decodeProtoCaptureSpec)
		case requestApplyVersion:
			return f.setString(&m.Version)
		case requestApplyLastCapture:
			return mergeMessage(f, &m.LastCapture, decodeProtoCaptureSpec)
		case requestApplyLastVersion:
			return f.setString(&m.LastVersion)
		}
		return nil
	})
}

func decodeProtoOpen(b []byte, m *OpenRequest) error {
	return walkProto("capture.Request.Open", b, func(f protoField) error {
		switch f.num {
		case requestOpenCapture:
			return mergeMessage(f, &m.Capture, decodeProtoCaptureSpec)
		case requestOpenVersion:
			return f.setString(&m.Version)
		case requestOpenRange:
			return mergeMessage(f, &m.Range, decodeProtoRange)
		case requestOpenStateJSON:
			return f.setRaw(&m.State)
		}
		return nil
	})
}

func decodeProtoAcknowledge(b []byte, m *AcknowledgeRequest) error {
	return walkProto("capture.Request.Acknowledge", b, func(f protoField) error {
		if f.num == requestAcknowledgeCheckpoints {
			return f.setUint32(&m.Checkpoints)
		}
		return nil
	})
}

func decodeProtoCaptureSpec(b []byte, m *CaptureSpec) error {
	return walkProto("flow.CaptureSpec", b, func(f protoField) error {
		switch f.num {
		case captureSpecName:
			return f.setString(&m.Name)
		case captureSpecConnectorType:
			return setEnum(f, &m.ConnectorType)
		case captureSpecConfigJSON:
			return f.setRaw(&m.Config)
		case captureSpecBindings:
			return appendMessage(f, &m.Bindings, decodeProtoCaptureBinding)
		case captureSpecIntervalSeconds:
			return f.setUint32(&m.IntervalSeconds)
		}
		return nil
	})
}

func decodeProtoCaptureBinding(b []byte, m *CaptureBinding) error {
	return walkProto("flow.CaptureSpec.Binding", b, func(f protoField) error {
		switch f.num {
		case captureSpecBindingResourceConfigJSON:
			return f.setRaw(&m.ResourceConfig)
		case captureSpecBindingResourcePath:
			return f.appendString(&m.ResourcePath)
		case captureSpecBindingCollection:
			return mergeInto(f, &m.Collection, decodeProtoCollection)
		case captureSpecBindingBackfill:
			return f.setUint32(&m.Backfill)
		case captureSpecBindingStateKey:
			return f.setString(&m.StateKey)
		}
		return nil
	})
}

func decodeProtoCollection(b []byte, m *CollectionSpec) error {
	return walkProto("flow.CollectionSpec", b, func(f protoField) error {
		switch f.num {
		case collectionSpecName:
			return f.setString(&m.Name)
		case collectionSpecKey:
			return f.appendString(&m.Key)
		case collectionSpecUUIDPtr:
			return f.setString(&m.UUIDPtr)
		case collectionSpecProjections:
			return appendMessage(f, &m.Projections, decodeProtoProjection)
		case collectionSpecWriteSchemaJSON:
			return f.setRaw(&m.WriteSchema)
		case collectionSpecReadSchemaJSON:
			return f.setRaw(&m.ReadSchema)
		}
		return nil
	})
}

func decodeProtoProjection(b []byte, m *Projection) error {
	return walkProto("flow.Projection", b, func(f protoField) error {
		switch f.num {
		case projectionPtr:
			return f.setString(&m.Ptr)
		case projectionField:
			return f.setString(&m.Field)
		case projectionExplicit:
			return f.setBool(&m.Explicit)
		case projectionIsPartitionKey:
			return f.setBool(&m.IsPartitionKey)
		case projectionIsPrimaryKey:
			return f.setBool(&m.IsPrimaryKey)
		}
		return nil
	})
}

func decodeProtoRange(b []byte, m *RangeSpec) error {
	return walkProto("flow.RangeSpec", b, func(f protoField) error {
		switch f.num {
		case rangeSpecKeyBegin:
			return f.setFixed32(&m.KeyBegin)
		case rangeSpecKeyEnd:
			return f.setFixed32(&m.KeyEnd)
		case rangeSpecRClockBegin:
			return f.setFixed32(&m.RClockBegin)
		case rangeSpecRClockEnd:
			return f.setFixed32(&m.RClockEnd)
		}
		return nil
	})
}
