package pgtypes

import (
	"slices"

	"github.com/jackc/pgx/v5/pgtype"
)

// Media types of json and jsonb columns' schemas.
const (
	JSONMediaType  = "application/json"
	JSONBMediaType = "application/vnd.estuary.postgresql.jsonb+json"
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
		// Any JSON value. The media type tells a materialization json from
		// jsonb, with the values Estuary's capture uses.
		if t.OID == pgtype.JSONBOID {
			return map[string]any{"contentMediaType": JSONBMediaType}
		}
		return map[string]any{"contentMediaType": JSONMediaType}
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
		if t.enc.FlattenArrays {
			return map[string]any{"type": "array", "items": Nullable(t.Elem.Schema())}
		}
		return map[string]any{"type": "array", "items": arrayItems(t.Elem.Schema())}
	}
	// Constraints the database can widen without rewriting the table are
	// left out: enum labels (ALTER TYPE ... ADD VALUE), the lengths of
	// varchar, char, bit and varbit, a domain's CHECKs. Documents holding a
	// widened value can follow the ALTER at once, some of these changes send
	// the replication stream no Relation message at all, and a collection's
	// schema holding the old limit would make its runtime reject them. The
	// column's description still names its source type, modifier included.
	s := map[string]any{"type": "string"}
	switch t.OID {
	case pgtype.NumericOID:
		s["format"] = "number"
	case pgtype.UUIDOID:
		s["format"] = "uuid"
	}
	return s
}

// arrayItems widens an element schema to what an array element may be: the
// element, null, or a nested array (PostgreSQL does not enforce a column's
// declared dimensions, so any array column may hold a multidimensional
// value).
func arrayItems(elem map[string]any) map[string]any {
	return addTypes(elem, "array", "null")
}

// Nullable returns schema widened to admit null as well: "null" is added to
// its type. A schema without a type already admits null and is returned as
// is.
func Nullable(schema map[string]any) map[string]any {
	return addTypes(schema, "null")
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
