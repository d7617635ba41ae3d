package pgtypes

import (
	"slices"

	"github.com/jackc/pgx/v5/pgtype"
)

// Schema returns the JSON Schema of the values AppendJSON emits for t (never
// null). It returns a new map on every call, which the caller may modify.
func (t *Type) Schema() map[string]any {
	if t.asText {
		if t.keyKind() == keyFloat {
			return map[string]any{"type": "string", "format": "number"}
		}
		return map[string]any{"type": "string"}
	}
	switch t.codec {
	case codecBool:
		return map[string]any{"type": "boolean"}
	case codecInt:
		return map[string]any{"type": "integer"}
	case codecFloat:
		return map[string]any{"type": []string{"number", "string"}, "format": "number"}
	case codecBytea:
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case codecJSON:
		return map[string]any{}
	case codecDate:
		return map[string]any{"type": "string", "format": "date"}
	case codecTime, codecTimetz:
		return map[string]any{"type": "string", "format": "time"}
	case codecTimestamp, codecTimestamptz:
		return map[string]any{"type": "string", "format": "date-time"}
	case codecDomain:
		return t.Base.Schema()
	case codecArray:
		if t.Elem == nil {
			break
		}
		return map[string]any{"type": "array", "items": arrayItems(t.Elem.Schema())}
	}
	if t.Kind == KindEnum {
		return map[string]any{"type": "string", "enum": slices.Clone(t.EnumLabels)}
	}
	s := map[string]any{"type": "string"}
	switch t.OID {
	case pgtype.NumericOID:
		s["format"] = "number"
	case pgtype.UUIDOID:
		s["format"] = "uuid"
	case pgtype.VarcharOID:
		if t.Typmod >= 4 {
			s["maxLength"] = int(t.Typmod - 4)
		}
	case pgtype.BPCharOID:
		if t.Typmod >= 4 {
			s["minLength"], s["maxLength"] = int(t.Typmod-4), int(t.Typmod-4)
		}
	case pgtype.BitOID:
		if t.Typmod >= 0 {
			s["minLength"], s["maxLength"] = int(t.Typmod), int(t.Typmod)
		}
	case pgtype.VarbitOID:
		if t.Typmod >= 0 {
			s["maxLength"] = int(t.Typmod)
		}
	}
	return s
}

// arrayItems widens an element schema to what an array element may be: the
// element, null, or a nested array (PostgreSQL does not enforce a column's
// declared dimensions, so any array column may hold a multidimensional
// value).
func arrayItems(elem map[string]any) map[string]any {
	if _, ok := elem["enum"]; ok {
		return map[string]any{"anyOf": []any{Nullable(elem), map[string]any{"type": "array"}}}
	}
	return addTypes(elem, "array", "null")
}

// Nullable returns schema widened to admit null as well: "null" is added to
// its type, and to its enum if it has one. A schema without a type already
// admits null and is returned as is.
func Nullable(schema map[string]any) map[string]any {
	s := addTypes(schema, "null")
	if enum, ok := s["enum"].([]string); ok {
		values := make([]any, 0, len(enum)+1)
		for _, v := range enum {
			values = append(values, v)
		}
		s["enum"] = append(values, nil)
	}
	return s
}

// addTypes returns a copy of schema whose type also admits each of types.
func addTypes(schema map[string]any, types ...string) map[string]any {
	s := make(map[string]any, len(schema))
	for k, v := range schema {
		s[k] = v
	}
	var have []string
	switch typ := schema["type"].(type) {
	case string:
		have = []string{typ}
	case []string:
		have = slices.Clone(typ)
	default:
		return s
	}
	for _, add := range types {
		if !slices.Contains(have, add) {
			have = append(have, add)
		}
	}
	s["type"] = have
	return s
}
