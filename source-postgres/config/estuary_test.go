package config

import (
	"strings"
	"testing"
	"time"
)

// estuaryConfig is a configuration as Estuary's source-postgres takes it,
// every field of its advanced section set.
const estuaryConfig = `{
  "address": "db.example.com:5432",
  "database": "app",
  "user": "flow_capture",
  "credentials": {"auth_type": "UserPassword", "password": "secret1234"},
  "historyMode": false,
  "discoveryFilters": {"include_schemas": ["public"], "exclude_schemas": ["audit"], "table_patterns": ["ord*", "public.line_?tems"], "discover_unpublished_tables": true},
  "advanced": {
    "publicationName": "flow_publication",
    "slotName": "flow_slot",
    "watermarksTable": "public.flow_watermarks",
    "skip_backfills": "public.big",
    "backfill_chunk_size": 50000,
    "sslmode": "require",
    "discover_schemas": ["sales"],
    "min_backfill_xid": "12345",
    "read_only_capture": true,
    "capture_as_partitions": true,
    "discover_unpublished_tables": true,
    "source_tag": "prod-eu",
    "rediscovery_interval": "15m",
    "feature_flags": "flatten_arrays, no_emit_sourced_schemas,force_reset_cursor=0/1A2B,mystery",
    "statement_timeout": "30s"
  },
  "networkTunnel": {"sshForwarding": {"sshEndpoint": "", "privateKey": ""}}
}`

func TestParseEstuaryConfig(t *testing.T) {
	e, err := Parse([]byte(estuaryConfig))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if e.Password != "secret1234" {
		t.Errorf("the password of credentials was not used: %q", e.Password)
	}
	if !e.FlattenArrays() || !e.SchemaInference() || e.TruncateOversized() || e.Advanced.SourceTag != "prod-eu" {
		t.Errorf("flatten %t, inference %t, truncate %t, tag %q", e.FlattenArrays(), e.SchemaInference(), e.TruncateOversized(), e.Advanced.SourceTag)
	}
	if d, err := e.Advanced.StatementTimeout(); err != nil || d != 30*time.Second {
		t.Errorf("StatementTimeout = %v, %v", d, err)
	}
	notes := strings.Join(e.CompatibilityNotes(), "\n")
	for _, want := range []string{"min_backfill_xid", "read_only_capture", "capture_as_partitions", "discover_unpublished_tables",
		"rediscovery_interval", `"no_emit_sourced_schemas"`, `"force_reset_cursor=0/1A2B"`, `"mystery"`} {
		if !strings.Contains(notes, want) {
			t.Errorf("no note mentions %s:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "flatten_arrays") || strings.Contains(notes, "source_tag") {
		t.Errorf("a note mentions an honoured setting:\n%s", notes)
	}
	if r := e.Redacted(); r.Credentials.Password != "REDACTED" || e.Credentials.Password != "secret1234" {
		t.Errorf("Redacted: credentials.password %q, original %q", r.Credentials.Password, e.Credentials.Password)
	}
}

func TestIncludeTable(t *testing.T) {
	e, err := Parse([]byte(estuaryConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		schema, table string
		want          bool
	}{
		{"public", "orders", true},       // ord*
		{"public", "line_items", true},   // public.line_?tems
		{"sales", "order_lines", true},   // discover_schemas, ord*
		{"public", "customers", false},   // no pattern
		{"audit", "orders", false},       // not included
		{"other", "orders", false},       // not included
		{"public", "xline_items", false}, // anchored
	} {
		if got := e.IncludeTable(tc.schema, tc.table); got != tc.want {
			t.Errorf("IncludeTable(%s.%s) = %t, want %t", tc.schema, tc.table, got, tc.want)
		}
	}
}

func TestParseFeatureFlags(t *testing.T) {
	f := ParseFeatureFlags(" a ,no_b,,c=1/2, no_a")
	if on, ok := f.On["a"]; !ok || on {
		t.Errorf("a: later no_a should win: %v", f.On)
	}
	if on, ok := f.On["b"]; !ok || on {
		t.Errorf("b: %v", f.On)
	}
	if f.Values["c"] != "1/2" || len(f.On) != 2 {
		t.Errorf("flags %v, values %v", f.On, f.Values)
	}
	for flags, want := range map[string]bool{
		"":                                       false,
		"flatten_arrays":                         true,
		"flatten_arrays,multidimensional_arrays": false,
		"no_flatten_arrays":                      false,
	} {
		e := Endpoint{Advanced: Advanced{FeatureFlags: flags}}
		if got := e.FlattenArrays(); got != want {
			t.Errorf("FlattenArrays(%q) = %t, want %t", flags, got, want)
		}
	}
}

func TestParseEstuaryErrors(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{`{"address":"db","credentials":{"auth_type":"AWSIAM","aws_region":"eu-west-1","aws_role_arn":"arn:x"}}`, "AWSIAM is not supported"},
		{`{"address":"db","credentials":{"auth_type":"GCPIAM"}}`, "gcp_access_token"},
		{`{"address":"db","credentials":{"auth_type":"Kerberos"}}`, `"Kerberos" is not one of`},
		{`{"address":"db","password":"a","credentials":{"auth_type":"UserPassword","password":"b"}}`, "both set"},
		{`{"address":"db","advanced":{"min_backfill_xid":"12a"}}`, "min_backfill_xid"},
		{`{"address":"db","advanced":{"statement_timeout":"soon"}}`, "statement_timeout"},
		{`{"address":"db","advanced":{"oversized_values":"drop"}}`, "oversized_values"},
		{`{"address":"db","advanced":{"rediscovery_interval":"1d"}}`, "rediscovery_interval"},
		{`{"address":"db","advanced":{"discover_schemas":[" "]}}`, "discover_schemas"},
	} {
		_, err := Parse([]byte(tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want an error containing %q", tc.config, err, tc.want)
		}
	}
	e, err := Parse([]byte(`{"address":"db","credentials":{"auth_type":"GCPIAM","gcp_access_token":"tok"}}`))
	if err != nil || e.Password != "tok" {
		t.Errorf("GCPIAM with an injected token: %v, password %q", err, e.Password)
	}
}
