package discovery

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"pgcapture/source-postgres/pgtypes"
)

// DocumentSchema returns the JSON Schema (draft 2020-12) of the table's
// documents: the row's columns as properties, the key columns required,
// and _meta. Columns that documents do not carry (see InDocuments) are
// left out.
//
// Its reduce annotations make the runtime merge the documents of one key
// and delete the key on a document whose _meta/op is "d"; _meta/before
// keeps its first value.
func (t *Table) DocumentSchema() (json.RawMessage, error) {
	return t.DocumentSchemaWith(SchemaOptions{Inference: true})
}

// SchemaOptions are the capture settings that shape a document schema.
type SchemaOptions struct {
	// SourceTag: documents carry _meta/source/tag.
	SourceTag bool
	// HistoryMode: _meta/source keeps the last change's source rather than
	// merging sources (Estuary's historyMode).
	HistoryMode bool
	// Inference asks the runtime to infer a schema too (x-infer-schema).
	Inference bool
}

// DocumentSchemaWith is DocumentSchema shaped by opts.
func (t *Table) DocumentSchemaWith(opts SchemaOptions) (json.RawMessage, error) {
	anchor := t.anchor()
	properties := make(map[string]any, len(t.Columns))
	for _, c := range t.Columns {
		if c.InDocuments() {
			properties[c.Name] = c.Schema()
		}
	}
	row := map[string]any{
		"$anchor":    anchor,
		"type":       "object",
		"properties": properties,
	}
	if len(t.Key) > 0 {
		row["required"] = t.Key
	}
	source := map[string]any{
		"type":     "object",
		"required": []string{"schema", "table", "loc"},
		"properties": map[string]any{
			"schema": map[string]any{"type": "string", "description": "Schema of the source table."},
			"table":  map[string]any{"type": "string", "description": "Name of the source table."},
			"loc": map[string]any{
				"type":        "array",
				"items":       map[string]any{"type": "integer"},
				"minItems":    3,
				"maxItems":    3,
				"description": "Location of the change: [last commit end LSN, change LSN, transaction begin LSN]; [-1, row number, 0] for backfilled rows.",
			},
			"ts_ms":    map[string]any{"type": "integer", "description": "Commit time of the change in Unix milliseconds."},
			"txid":     map[string]any{"type": "integer", "description": "Transaction ID of the change."},
			"snapshot": map[string]any{"type": "boolean", "description": "True for rows read by a backfill."},
		},
	}
	if t.Polled {
		source = polledSourceSchema()
	}
	meta := map[string]any{
		"type":     "object",
		"required": []string{"op", "source"},
		"properties": map[string]any{
			"op": map[string]any{
				"enum":        []string{"c", "u", "d"},
				"description": "Change operation: c (insert or backfill), u (update) or d (delete).",
			},
			"source": source,
			"before": map[string]any{
				"$ref":        "#" + anchor,
				"description": "The row before an update, when the replica identity provides it.",
				"reduce":      map[string]any{"strategy": "firstWriteWins"},
			},
		},
		"reduce": map[string]any{"strategy": "merge"},
	}
	if opts.SourceTag {
		source["properties"].(map[string]any)["tag"] = map[string]any{"type": "string", "description": "The capture's source_tag."}
	}
	if opts.HistoryMode {
		source["reduce"] = map[string]any{"strategy": "lastWriteWins", "associative": false}
	}
	doc := map[string]any{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"$defs":   map[string]any{anchor: row},
		"allOf": []any{
			map[string]any{
				"required":   []string{"_meta"},
				"properties": map[string]any{"_meta": meta},
				"if":         map[string]any{"properties": map[string]any{"_meta": map[string]any{"properties": map[string]any{"op": map[string]any{"const": "d"}}}}},
				"then":       map[string]any{"reduce": map[string]any{"strategy": "merge", "delete": true}},
				"else":       map[string]any{"reduce": map[string]any{"strategy": "merge"}},
			},
			map[string]any{"$ref": "#" + anchor},
		},
	}
	if opts.Inference {
		doc["x-infer-schema"] = true
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding the document schema of %s: %w", t.QuotedName(), err)
	}
	return out, nil
}

// Schema returns the JSON Schema of the column's document property: its
// type's schema, admitting null unless the column is NOT NULL, and a
// description naming the source type.
func (c *Column) Schema() map[string]any {
	s := c.JSONType().Schema()
	nullability := "non-nullable "
	if !c.NotNull {
		s = pgtypes.Nullable(s)
		nullability = ""
	}
	description := "(source type: " + nullability + c.TypeName + ")"
	if c.Comment != "" {
		description = c.Comment + " " + description
	}
	s["description"] = description
	return s
}

// anchor names the row schema after the table, "PublicUsers" for
// public.users: an $anchor must start with a letter and hold only letters,
// digits, '-', '_' and '.', all ASCII.
func (t *Table) anchor() string {
	var b strings.Builder
	for _, part := range []string{t.Schema, t.Name} {
		for _, word := range strings.FieldsFunc(part, func(r rune) bool {
			return r > unicode.MaxASCII || !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}) {
			b.WriteString(strings.ToUpper(word[:1]))
			b.WriteString(word[1:])
		}
	}
	s := b.String()
	if s == "" || !unicode.IsLetter(rune(s[0])) {
		s = "Table" + s
	}
	return s
}
