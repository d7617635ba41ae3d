package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file holds the fields of Estuary's source-postgres configuration
// that this connector accepts so that a capture can switch connectors
// without a config edit: each is either honoured or accepted with a note,
// logged at startup, that says what it means here (CompatibilityNotes).

// Authentication types of Credentials.
const (
	AuthUserPassword = "UserPassword"
	AuthAWSIAM       = "AWSIAM"
	AuthGCPIAM       = "GCPIAM"
	AuthAzureIAM     = "AzureIAM"
)

var authTypes = []string{AuthUserPassword, AuthAWSIAM, AuthGCPIAM, AuthAzureIAM}

// Credentials is Estuary's way of giving the password: an object keyed by
// auth_type. UserPassword's password is used as Endpoint.Password. The
// cloud IAM variants are usable when the runtime injects an access token
// (GCP and Azure take it as the password); their configuration fields are
// accepted so that the config parses.
type Credentials struct {
	AuthType string `json:"auth_type" jsonschema:"title=Authentication Type" jsonschema_description:"How the connector authenticates: UserPassword (the password below), or a cloud IAM identity (AWSIAM, GCPIAM, AzureIAM) whose access token the Flow runtime supplies."`
	Password string `json:"password,omitempty" jsonschema:"title=Password" jsonschema_description:"Password of the database user, for UserPassword. It takes the place of the top-level password." jsonschema_extras:"secret=true"`

	AWSRegion                       string `json:"aws_region,omitempty" jsonschema:"title=AWS Region" jsonschema_description:"AWSIAM: the region of the database."`
	AWSRoleARN                      string `json:"aws_role_arn,omitempty" jsonschema:"title=AWS Role ARN" jsonschema_description:"AWSIAM: the role the runtime assumes to connect."`
	GCPServiceAccount               string `json:"gcp_service_account_to_impersonate,omitempty" jsonschema:"title=GCP Service Account" jsonschema_description:"GCPIAM: the service account the runtime impersonates."`
	GCPWorkloadIdentityPoolAudience string `json:"gcp_workload_identity_pool_audience,omitempty" jsonschema:"title=GCP Workload Identity Pool Audience" jsonschema_description:"GCPIAM: the audience of the workload identity pool."`
	AzureClientID                   string `json:"azure_client_id,omitempty" jsonschema:"title=Azure Client ID" jsonschema_description:"AzureIAM: the application (client) ID."`
	AzureTenantID                   string `json:"azure_tenant_id,omitempty" jsonschema:"title=Azure Tenant ID" jsonschema_description:"AzureIAM: the directory (tenant) ID."`

	// Injected by the runtime, never entered by a user.
	AWSAccessKeyID     string `json:"aws_access_key_id,omitempty" jsonschema:"-"`
	AWSSecretAccessKey string `json:"aws_secret_access_key,omitempty" jsonschema:"-"`
	AWSSessionToken    string `json:"aws_session_token,omitempty" jsonschema:"-"`
	GCPAccessToken     string `json:"gcp_access_token,omitempty" jsonschema:"-"`
	AzureAccessToken   string `json:"azure_access_token,omitempty" jsonschema:"-"`
}

// DiscoveryFilters narrow what discovery offers. They never affect a
// binding that names its table.
type DiscoveryFilters struct {
	IncludeSchemas            []string `json:"include_schemas,omitempty" jsonschema:"title=Include Schemas" jsonschema_description:"Discover only tables in these schemas (with advanced.discover_schemas). Empty: every schema."`
	ExcludeSchemas            []string `json:"exclude_schemas,omitempty" jsonschema:"title=Exclude Schemas" jsonschema_description:"Do not discover tables in these schemas."`
	TablePatterns             []string `json:"table_patterns,omitempty" jsonschema:"title=Table Patterns" jsonschema_description:"Discover only tables matching one of these patterns, where * matches any run of characters and ? one character. A pattern with a dot matches schema.table, one without matches the table name in any schema."`
	DiscoverUnpublishedTables bool     `json:"discover_unpublished_tables,omitempty" jsonschema:"title=Discover Unpublished Tables" jsonschema_description:"Accepted for compatibility: tables outside the publication are always discovered, and added to it when captured."`
}

// Values of Advanced.OversizedValues.
const (
	OversizedEmit     = "emit"
	OversizedTruncate = "truncate"
)

var oversizedValues = []string{OversizedEmit, OversizedTruncate}

// TruncateThreshold is the size in bytes past which OversizedTruncate cuts
// a value: Estuary's, so that truncated documents match its connector's.
const TruncateThreshold = 8 << 20

// statementTimeouts are Estuary's choices for advanced.statement_timeout.
var statementTimeouts = []string{"", "0", "30s", "1m", "2m", "5m", "30m"}

var rediscoveryPattern = regexp.MustCompile(`^[0-9]+(ms|s|m|h)$`)

// validateEstuary checks the fields of this file.
func (e *Endpoint) validateEstuary() []error {
	var errs []error
	if c := e.Credentials; c != nil {
		switch c.AuthType {
		case AuthUserPassword, "":
		case AuthGCPIAM:
			if c.GCPAccessToken == "" {
				errs = append(errs, errors.New(`"credentials.auth_type" GCPIAM needs the access token the Flow runtime injects (gcp_access_token), and none was given: use UserPassword outside of Flow`))
			}
		case AuthAzureIAM:
			if c.AzureAccessToken == "" {
				errs = append(errs, errors.New(`"credentials.auth_type" AzureIAM needs the access token the Flow runtime injects (azure_access_token), and none was given: use UserPassword outside of Flow`))
			}
		case AuthAWSIAM:
			errs = append(errs, errors.New(`"credentials.auth_type" AWSIAM is not supported by this connector: create a password for the capture's user and use {"auth_type": "UserPassword", "password": ...}`))
		default:
			errs = append(errs, fmt.Errorf(`"credentials.auth_type" %q is not one of %s`, c.AuthType, strings.Join(authTypes, ", ")))
		}
		if c.Password != "" && e.Password != "" && c.Password != e.Password {
			errs = append(errs, errors.New(`"password" and "credentials.password" are both set, to different values: keep only one`))
		}
	}
	a := &e.Advanced
	for i, s := range a.DiscoverSchemas {
		if strings.TrimSpace(s) == "" {
			errs = append(errs, fmt.Errorf(`"advanced.discover_schemas" entry %d is blank: remove it`, i))
		}
	}
	if a.MinBackfillXID != "" {
		if _, err := strconv.ParseUint(a.MinBackfillXID, 10, 32); err != nil {
			errs = append(errs, fmt.Errorf(`"advanced.min_backfill_xid" %q is not a transaction ID: use digits only, or leave it empty`, a.MinBackfillXID))
		}
	}
	if a.RediscoveryInterval != "" && !rediscoveryPattern.MatchString(a.RediscoveryInterval) {
		errs = append(errs, fmt.Errorf(`"advanced.rediscovery_interval" %q is not a duration such as "15m" or "2h"`, a.RediscoveryInterval))
	}
	if _, err := a.StatementTimeout(); err != nil {
		errs = append(errs, err)
	}
	if a.OversizedValues != "" && !slices.Contains(oversizedValues, a.OversizedValues) {
		errs = append(errs, fmt.Errorf(`"advanced.oversized_values" %q is not one of %s`, a.OversizedValues, strings.Join(oversizedValues, ", ")))
	}
	return errs
}

// applyEstuaryDefaults sets the default of oversized_values, and takes the
// password from Credentials, where Estuary keeps it.
func (e *Endpoint) applyEstuaryDefaults() {
	if e.Advanced.OversizedValues == "" {
		e.Advanced.OversizedValues = OversizedEmit
	}
	c := e.Credentials
	if c == nil || e.Password != "" {
		return
	}
	switch c.AuthType {
	case AuthUserPassword, "":
		e.Password = c.Password
	case AuthGCPIAM:
		e.Password = c.GCPAccessToken
	case AuthAzureIAM:
		e.Password = c.AzureAccessToken
	}
}

// StatementTimeout returns the statement_timeout to set on the query
// connection, and whether to set one: "" leaves the server's setting.
func (a *Advanced) StatementTimeout() (time.Duration, error) {
	switch a.StatementTimeoutText {
	case "":
		return -1, nil
	case "0":
		return 0, nil
	}
	d, err := time.ParseDuration(a.StatementTimeoutText)
	if err != nil || d < 0 {
		return 0, fmt.Errorf(`"advanced.statement_timeout" %q is not a duration: use one of %q`, a.StatementTimeoutText, statementTimeouts)
	}
	return d, nil
}

// FeatureFlags are Estuary's advanced.feature_flags: a comma-separated list
// of names, each turning a flag on, or off with a "no_" prefix. Names with
// "=" carry a value.
type FeatureFlags struct {
	On     map[string]bool
	Values map[string]string
}

// ParseFeatureFlags parses a feature_flags string as Estuary does: split on
// commas, spaces trimmed, empty names skipped, later names winning.
func ParseFeatureFlags(s string) FeatureFlags {
	f := FeatureFlags{On: map[string]bool{}, Values: map[string]string{}}
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if k, v, ok := strings.Cut(name, "="); ok {
			f.Values[k] = v
			continue
		}
		if n, ok := strings.CutPrefix(name, "no_"); ok {
			f.On[n] = false
		} else {
			f.On[name] = true
		}
	}
	return f
}

// set reports whether the flag is given, and its value.
func (f FeatureFlags) set(name string) (on, given bool) {
	on, given = f.On[name]
	return on, given
}

// FlattenArrays reports whether multidimensional arrays are flattened into
// one list of their elements, as Estuary's connector does by default. Here
// they are nested per dimension unless the flags ask for flattening
// explicitly: flatten_arrays on, and multidimensional_arrays not on.
func (e *Endpoint) FlattenArrays() bool {
	f := ParseFeatureFlags(e.Advanced.FeatureFlags)
	flatten, _ := f.set("flatten_arrays")
	multi, _ := f.set("multidimensional_arrays")
	return flatten && !multi
}

// SchemaInference reports whether discovered schemas ask the runtime to
// infer a schema (x-infer-schema), which the use_schema_inference flag,
// on by default, controls.
func (e *Endpoint) SchemaInference() bool {
	on, given := ParseFeatureFlags(e.Advanced.FeatureFlags).set("use_schema_inference")
	return on || !given
}

// TruncateOversized reports whether values longer than TruncateThreshold
// are cut (advanced.oversized_values = truncate).
func (e *Endpoint) TruncateOversized() bool {
	return e.Advanced.OversizedValues == OversizedTruncate
}

// IncludeTable reports whether discovery offers the table schema.table
// under the discovery filters and advanced.discover_schemas.
func (e *Endpoint) IncludeTable(schema, table string) bool {
	include := slices.Clone(e.Advanced.DiscoverSchemas)
	var exclude, patterns []string
	if f := e.DiscoveryFilters; f != nil {
		include = append(include, f.IncludeSchemas...)
		exclude, patterns = f.ExcludeSchemas, f.TablePatterns
	}
	if len(include) > 0 && !slices.Contains(include, schema) || slices.Contains(exclude, schema) {
		return false
	}
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		name := table
		if strings.Contains(p, ".") {
			name = schema + "." + table
		}
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

// globMatch matches name against a pattern of literal characters, '*'
// (any run) and '?' (any one character).
func globMatch(pattern, name string) bool {
	p, n := []rune(pattern), []rune(name)
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for i < len(p) {
			switch p[i] {
			case '*':
				for k := j; k <= len(n); k++ {
					if match(i+1, k) {
						return true
					}
				}
				return false
			case '?':
				if j >= len(n) {
					return false
				}
			default:
				if j >= len(n) || n[j] != p[i] {
					return false
				}
			}
			i++
			j++
		}
		return j == len(n)
	}
	return match(0, 0)
}

// CompatibilityNotes returns, for each setting of Estuary's configuration
// that this connector accepts without doing what Estuary's does, a line
// saying what it means here. The connector logs them as warnings.
func (e *Endpoint) CompatibilityNotes() []string {
	var notes []string
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	a := &e.Advanced
	if e.HistoryMode {
		note(`"historyMode": documents are emitted as usual; only the schema of _meta/source changes, to lastWriteWins, as in Estuary's connector`)
	}
	if a.MinBackfillXID != "" {
		note(`"advanced.min_backfill_xid" is ignored: backfills read every row of a table, a superset of the rows the filter would keep`)
	}
	if a.ReadOnlyCapture {
		note(`"advanced.read_only_capture" is ignored: this connector writes a watermark row to %s to fence each backfill chunk, so the user needs write access to it`, a.WatermarksTable)
	}
	if a.CaptureAsPartitions {
		note(`"advanced.capture_as_partitions": partitions are captured as the publication publishes them, through their root (publish_via_partition_root = true) or as themselves (false)`)
	}
	if a.DiscoverUnpublishedTables || e.DiscoveryFilters != nil && e.DiscoveryFilters.DiscoverUnpublishedTables {
		note(`"discover_unpublished_tables": tables outside the publication are always discovered here, and added to it when captured`)
	}
	if a.DiscoverOnlyPublished {
		note(`"advanced.discover_only_published" is deprecated and ignored, as in Estuary's connector`)
	}
	if a.RediscoveryInterval != "" {
		note(`"advanced.rediscovery_interval" is ignored: a table's schema is reported again whenever the replication stream shows it changed, not on a timer`)
	}
	flags := ParseFeatureFlags(a.FeatureFlags)
	for _, name := range slices.Sorted(maps.Keys(flags.On)) {
		on := flags.On[name]
		switch {
		case name == "flatten_arrays" && !on:
			if multi, _ := flags.set("multidimensional_arrays"); !multi {
				note(`feature flag "no_flatten_arrays": arrays are emitted as nested JSON arrays, one level per dimension (as with multidimensional_arrays), not as {"dimensions","elements"} objects`)
			}
		case name == "flatten_arrays" || name == "multidimensional_arrays":
			// Honoured: see FlattenArrays.
		case name == "use_schema_inference":
			// Honoured: see SchemaInference.
		case name == "emit_sourced_schemas" && !on:
			note(`feature flag "no_emit_sourced_schemas" is ignored: a table's schema is always reported when it changes, so that documents never outrun their collection's schema`)
		case name == "date_as_date" && !on:
			note(`feature flag "no_date_as_date" is ignored: date columns are emitted as "YYYY-MM-DD" with format date`)
		case name == "time_as_time" && !on:
			note(`feature flag "no_time_as_time" is ignored: time columns are emitted as "HH:MM:SS[.ffffff]Z" with format time`)
		case name == "create_replication_slot" && !on:
			note(`feature flag "no_create_replication_slot" is ignored: the slot is created only when the capture has no checkpoint, and a missing slot with a checkpoint is always an error`)
		case (name == "skip_prerequisites" || name == "skip_table_prerequisites") && on:
			note(`feature flag %q is ignored: the prerequisites are always checked, and a failing one names the fix`, name)
		case name == "emit_sourced_schemas" || name == "date_as_date" || name == "time_as_time" ||
			name == "create_replication_slot" || name == "skip_prerequisites" || name == "skip_table_prerequisites":
			// The flag's state is this connector's behaviour.
		default:
			note(`feature flag %q is not known to this connector and is ignored`, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(flags.Values)) {
		switch name {
		case "initial_backfill_cursor", "force_reset_cursor":
			note(`feature flag "%s=%s" is ignored: the stream resumes from the capture's checkpoint, or starts at the slot's creation for a new capture`, name, flags.Values[name])
		default:
			note(`feature flag "%s=%s" is not known to this connector and is ignored`, name, flags.Values[name])
		}
	}
	return notes
}
