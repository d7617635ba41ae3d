package protocol

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
)

// The runtime's side of the proto codec, for drivers that stand in for the
// runtime (bench/): requests encoded with the field numbers of
// capture_fields.go, framed as Reader expects them.

// AppendProtoOpen appends r as a framed capture.Request carrying Open.
func AppendProtoOpen(b []byte, r *OpenRequest) []byte {
	var open []byte
	if r.Capture != nil {
		open = appendMessageField(open, requestOpenCapture, appendCaptureSpec(nil, r.Capture))
	}
	open = appendStringField(open, requestOpenVersion, r.Version)
	if r.Range != nil {
		open = appendMessageField(open, requestOpenRange, appendRangeSpec(nil, r.Range))
	}
	open = appendBytesField(open, requestOpenStateJSON, r.State)
	return appendProtoFrame(b, appendMessageField(nil, requestOpen, open))
}

// AppendProtoAcknowledge appends a framed capture.Request acknowledging
// checkpoints checkpoints.
func AppendProtoAcknowledge(b []byte, checkpoints uint32) []byte {
	ack := appendVarintField(nil, requestAcknowledgeCheckpoints, uint64(checkpoints))
	return appendProtoFrame(b, appendMessageField(nil, requestAcknowledge, ack))
}

func appendProtoFrame(b, msg []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(msg)))
	return append(b, msg...)
}

func appendCaptureSpec(b []byte, c *CaptureSpec) []byte {
	b = appendStringField(b, captureSpecName, c.Name)
	b = appendVarintField(b, captureSpecConnectorType, uint64(c.ConnectorType))
	b = appendBytesField(b, captureSpecConfigJSON, c.Config)
	for i := range c.Bindings {
		b = appendMessageField(b, captureSpecBindings, appendCaptureBinding(nil, &c.Bindings[i]))
	}
	return appendVarintField(b, captureSpecIntervalSeconds, uint64(c.IntervalSeconds))
}

func appendCaptureBinding(b []byte, cb *CaptureBinding) []byte {
	b = appendBytesField(b, captureSpecBindingResourceConfigJSON, cb.ResourceConfig)
	b = appendStringsField(b, captureSpecBindingResourcePath, cb.ResourcePath)
	b = appendMessageField(b, captureSpecBindingCollection, appendCollectionSpec(nil, &cb.Collection))
	b = appendVarintField(b, captureSpecBindingBackfill, uint64(cb.Backfill))
	return appendStringField(b, captureSpecBindingStateKey, cb.StateKey)
}

func appendCollectionSpec(b []byte, c *CollectionSpec) []byte {
	b = appendStringField(b, collectionSpecName, c.Name)
	b = appendStringsField(b, collectionSpecKey, c.Key)
	b = appendStringField(b, collectionSpecUUIDPtr, c.UUIDPtr)
	for _, p := range c.Projections {
		proj := appendStringField(nil, projectionPtr, p.Ptr)
		proj = appendStringField(proj, projectionField, p.Field)
		proj = appendBoolField(proj, projectionExplicit, p.Explicit)
		proj = appendBoolField(proj, projectionIsPartitionKey, p.IsPartitionKey)
		proj = appendBoolField(proj, projectionIsPrimaryKey, p.IsPrimaryKey)
		b = appendMessageField(b, collectionSpecProjections, proj)
	}
	b = appendBytesField(b, collectionSpecWriteSchemaJSON, c.WriteSchema)
	return appendBytesField(b, collectionSpecReadSchemaJSON, c.ReadSchema)
}

func appendRangeSpec(b []byte, r *RangeSpec) []byte {
	for _, f := range []struct {
		num protowire.Number
		v   uint32
	}{
		{rangeSpecKeyBegin, r.KeyBegin}, {rangeSpecKeyEnd, r.KeyEnd},
		{rangeSpecRClockBegin, r.RClockBegin}, {rangeSpecRClockEnd, r.RClockEnd},
	} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, f.v)
		}
	}
	return b
}
