package testsupport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// SchemaValidator checks documents against a JSON Schema (draft 2020-12),
// such as a discovered binding's documentSchema. Flow's own annotations
// (reduce, secret, ...) are ignored, as any unknown keyword is.
type SchemaValidator struct {
	mu     sync.Mutex
	schema *jsonschema.Schema
}

// NewSchemaValidator compiles schema.
func NewSchemaValidator(schema json.RawMessage) (*SchemaValidator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("parsing the schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("document.json", doc); err != nil {
		return nil, fmt.Errorf("adding the schema: %w", err)
	}
	s, err := c.Compile("document.json")
	if err != nil {
		return nil, fmt.Errorf("compiling the schema: %w", err)
	}
	return &SchemaValidator{schema: s}, nil
}

// Validate reports how doc violates the schema, if it does.
func (v *SchemaValidator) Validate(doc json.RawMessage) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("parsing the document: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.schema.Validate(inst); err != nil {
		return fmt.Errorf("document %s does not match its schema: %w", excerpt(doc), err)
	}
	return nil
}
