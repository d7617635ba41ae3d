package config

import (
	"encoding/json"
	"fmt"

	"github.com/invopop/jsonschema"
)

// ConfigSchema returns the JSON schema of the endpoint configuration, with the
// annotations Flow's UI understands: "secret" and "multiline" fields, "order"
// of fields within each object, and the "advanced" options section.
func ConfigSchema() json.RawMessage {
	return reflectSchema(&Endpoint{}, "PostgreSQL Connection")
}

// ResourceSchema returns the JSON schema of a binding's resource configuration.
func ResourceSchema() json.RawMessage {
	return reflectSchema(&Resource{}, "PostgreSQL Table")
}

// JSONSchemaExtend sets the defaults of the endpoint schema from the same
// constants Parse applies.
func (Endpoint) JSONSchemaExtend(s *jsonschema.Schema) {
	setDefault(s, "database", DefaultDatabase)
	setDefault(s, "user", DefaultUser)
}

// JSONSchemaExtend sets the defaults and choices of the advanced options
// schema from the same values Parse applies and Validate accepts.
func (Advanced) JSONSchemaExtend(s *jsonschema.Schema) {
	setDefault(s, "backfill_chunk_size", DefaultBackfillChunkSize)
	setDefault(s, "backfill_connections", DefaultBackfillConnections)
	setDefault(s, "publicationName", DefaultPublicationName)
	setDefault(s, "slotName", DefaultSlotName)
	setDefault(s, "watermarksTable", DefaultWatermarksTable)
	setDefault(s, "sslmode", DefaultSSLMode)
	setDefault(s, "network_timeout", FormatDuration(DefaultNetworkTimeout))
	setDefault(s, "retry_timeout", FormatDuration(DefaultRetryTimeout))
	setEnum(s, "sslmode", sslModes...)
	setDefault(s, "oversized_values", OversizedEmit)
	setEnum(s, "oversized_values", oversizedValues...)
	setEnum(s, "statement_timeout", statementTimeouts...)
}

// JSONSchemaExtend sets the choices of the resource schema from the same
// values Validate accepts.
func (Resource) JSONSchemaExtend(s *jsonschema.Schema) {
	setEnum(s, "syncMode", SyncModeIncremental)
	setEnum(s, "mode", modes...)
}

func setDefault(s *jsonschema.Schema, property string, value any) {
	if p, ok := s.Properties.Get(property); ok {
		p.Default = value
	}
}

func setEnum(s *jsonschema.Schema, property string, values ...string) {
	if p, ok := s.Properties.Get(property); ok {
		p.Enum = nil
		for _, v := range values {
			p.Enum = append(p.Enum, v)
		}
	}
}

func reflectSchema(v any, title string) json.RawMessage {
	r := jsonschema.Reflector{
		Anonymous:                  true,
		DoNotReference:             true, // Flow's UI renders inline schemas best.
		ExpandedStruct:             true,
		RequiredFromJSONSchemaTags: true,
	}
	s := r.Reflect(v)
	s.Title = title
	setOrder(s)

	out, err := json.Marshal(s)
	if err != nil {
		// The schema is built from this package's own types, so this is a
		// programming error that TestConfigSchemaGolden catches, like a
		// regexp.MustCompile of a bad constant.
		panic(fmt.Sprintf("config: marshaling the JSON schema of %T: %v", v, err))
	}
	return out
}

// setOrder gives every property an "order" annotation that follows the field
// order of its struct, because UIs otherwise sort fields alphabetically.
func setOrder(s *jsonschema.Schema) {
	if s.Properties == nil {
		return
	}
	order := 0
	for _, p := range s.Properties.FromOldest() {
		if p.Extras == nil {
			p.Extras = make(map[string]any)
		}
		p.Extras["order"] = order
		order++
		setOrder(p)
	}
}

// JSONSchemaExtend shows the credentials as Estuary's UI expects them: one
// variant per auth_type, told apart by it.
func (Credentials) JSONSchemaExtend(s *jsonschema.Schema) {
	variant := func(title, authType string, fields ...string) *jsonschema.Schema {
		v := &jsonschema.Schema{
			Type:       "object",
			Title:      title,
			Properties: jsonschema.NewProperties(),
			Required:   append([]string{"auth_type"}, fields...),
		}
		v.Properties.Set("auth_type", &jsonschema.Schema{Type: "string", Const: authType, Default: authType})
		for _, f := range fields {
			if p, ok := s.Properties.Get(f); ok {
				v.Properties.Set(f, p)
			}
		}
		return v
	}
	s.OneOf = []*jsonschema.Schema{
		variant("User Name and Password", AuthUserPassword, "password"),
		variant("AWS IAM (not supported)", AuthAWSIAM, "aws_region", "aws_role_arn"),
		variant("GCP IAM", AuthGCPIAM, "gcp_service_account_to_impersonate", "gcp_workload_identity_pool_audience"),
		variant("Azure IAM", AuthAzureIAM, "azure_client_id", "azure_tenant_id"),
	}
	s.Properties, s.Required = nil, nil
	if s.Extras == nil {
		s.Extras = map[string]any{}
	}
	s.Extras["discriminator"] = map[string]any{"propertyName": "auth_type"}
}
