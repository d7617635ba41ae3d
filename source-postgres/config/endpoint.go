// Package config defines the endpoint and resource configuration of the
// PostgreSQL capture: how it is parsed and validated, the JSON schemas shown
// to users, and how it becomes a pgconn connection configuration.
//
// Parsing is strict. An unknown or ill-typed field is an error naming the field
// by its path, because a misspelled option that is silently ignored (a
// "slot_name" instead of "slotName") makes the connector do something other
// than what the user asked for, and that is only discovered much later.
package config

// This file is over 500 lines because the endpoint configuration is one
// struct whose field tags are its JSON Schema, with Estuary's fields beside
// ours; its validation is next to it so that a field and its rule are read
// together.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"pgcapture/sshtunnel"
)

// maxBackfillConnections bounds advanced.backfill_connections: more is a
// typing mistake rather than a plan.
const maxBackfillConnections = 64

// Defaults of the endpoint configuration. Parse applies them to empty fields,
// and ConfigSchema advertises them.
const (
	DefaultDatabase = "postgres"
	DefaultUser     = "flow_capture"
	// DefaultBackfillChunkSize is larger than the 4096 rows other
	// PostgreSQL captures document: each chunk costs a few round trips and a
	// fence through the replication stream (about 2 ms), which at 4096 rows
	// held backfills to 0.6x of COPY's rate, and at 65536 to about 1x, with
	// the connector's memory under 30 MB (bench/, 1M rows of ~100 bytes).
	DefaultBackfillChunkSize = 65536
	// DefaultBackfillConnections reads one chunk at a time. Parallel rounds
	// are opt-in: each connection is a server process a database near its
	// connection limit may not have, and they lost rows after a cut
	// connection until a late fix (a chunk's position aliased the
	// scanner's buffer, see TestChunkPositionOutlivesTheNextChunk); the
	// whole end-to-end suite has since passed with 2 as the default.
	DefaultBackfillConnections = 1
	DefaultPublicationName     = "flow_publication"
	DefaultSlotName            = "flow_slot"
	DefaultWatermarksTable     = "public.flow_watermarks"
	DefaultSSLMode             = "prefer" // libpq's default
	DefaultPort                = 5432
	// DefaultNetworkTimeout is well above the server's keepalive period when
	// asked for one (the stream asks every few seconds), and well under the
	// minute after which wal_sender_timeout ends the server's side.
	DefaultNetworkTimeout = 30 * time.Second
	DefaultRetryTimeout   = 5 * time.Minute
)

// The values of advanced.replication_format ("" means ReplicationAuto).
const (
	ReplicationAuto = "auto"
	ReplicationText = "text"
)

// sslModes are the accepted values of advanced.sslmode, with libpq's meanings,
// and the choices its JSON schema offers.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// Endpoint is the configuration of the capture's connection to PostgreSQL.
//
// Password is not required: a server may authenticate the user without one
// (trust authentication, or a client certificate given in ssl_cert/ssl_key).
type Endpoint struct {
	Address  string `json:"address" jsonschema:"required,title=Server Address" jsonschema_description:"The host or host:port at which the database can be reached, such as db.example.com:5432 or [2001:db8::1]:5432. The port defaults to 5432."`
	Database string `json:"database" jsonschema:"required,title=Database" jsonschema_description:"The logical database to capture from."`
	User     string `json:"user" jsonschema:"required,title=User" jsonschema_description:"The database user to authenticate as. It needs the REPLICATION attribute and permission to read the captured tables."`
	Password string `json:"password" jsonschema:"title=Password" jsonschema_description:"Password of the database user. Leave it empty only if the server authenticates the user without one (trust authentication, or a client certificate set in Advanced Options)." jsonschema_extras:"secret=true"`
	// Credentials, HistoryMode and DiscoveryFilters are Estuary's fields
	// (estuary.go).
	Credentials      *Credentials      `json:"credentials,omitempty" jsonschema:"title=Authentication" jsonschema_description:"The password in Estuary's form, {\"auth_type\": \"UserPassword\", \"password\": ...}: an alternative to Password."`
	HistoryMode      bool              `json:"historyMode,omitempty" jsonschema:"title=History Mode" jsonschema_description:"Makes the schema keep every change's _meta/source rather than merging them (lastWriteWins, not associative), as Estuary's connector does. Documents are unchanged."`
	DiscoveryFilters *DiscoveryFilters `json:"discoveryFilters,omitempty" jsonschema:"title=Discovery Filters" jsonschema_description:"Which tables discovery offers."`
	Advanced         Advanced          `json:"advanced" jsonschema:"title=Advanced Options" jsonschema_description:"Options for advanced users. You should not typically need to modify these." jsonschema_extras:"advanced=true"`
	NetworkTunnel    *NetworkTunnel    `json:"networkTunnel,omitempty" jsonschema:"title=Network Tunnel" jsonschema_description:"Connect to the database through an SSH server that acts as a bastion host for your network."`
}

// Advanced holds the options most users never need to change.
type Advanced struct {
	BackfillChunkSize int `json:"backfill_chunk_size" jsonschema:"title=Backfill Chunk Size,minimum=1" jsonschema_description:"The number of rows fetched from the database in a single backfill query."`
	// BackfillConnections bounds the connections that read backfill
	// chunks at once, the query connection included.
	BackfillConnections int    `json:"backfill_connections" jsonschema:"title=Backfill Connections,minimum=1,maximum=64" jsonschema_description:"How many connections read backfill chunks at once: chunks of several tables, or ranges of one large table. 1 (the default) backfills one chunk at a time. Each connection is a server process busy for the whole backfill. Above 1 is newer and opt-in."`
	PublicationName     string `json:"publicationName" jsonschema:"title=Publication Name" jsonschema_description:"The PostgreSQL publication to replicate from."`
	SlotName            string `json:"slotName" jsonschema:"title=Slot Name" jsonschema_description:"The PostgreSQL replication slot to replicate from. Every capture from the same database needs its own slot."`
	WatermarksTable     string `json:"watermarksTable" jsonschema:"title=Watermarks Table" jsonschema_description:"The schema-qualified table to which watermarks are written during backfills, such as public.flow_watermarks."`
	SkipBackfills       string `json:"skip_backfills" jsonschema:"title=Skip Backfills" jsonschema_description:"A comma-separated list of schema-qualified tables, such as public.orders, whose existing rows are not backfilled: only changes made after the capture starts are captured from them."`
	SSLMode             string `json:"sslmode" jsonschema:"title=SSL Mode" jsonschema_description:"How to use TLS, with libpq's meanings. disable: never. allow: only if the server insists. prefer: if the server supports it. require: always, verifying the server's certificate against the SSL CA Certificate only if one is given. verify-ca: always, and the server's certificate must be signed by a trusted CA. verify-full: as verify-ca, and the certificate must also name the host in Server Address."`
	SSLCA               string `json:"ssl_ca" jsonschema:"title=SSL CA Certificate" jsonschema_description:"PEM-encoded certificate(s) of the certificate authority that issued the server's certificate. When empty, verify-ca and verify-full trust the system's certificate authorities." jsonschema_extras:"multiline=true"`
	SSLCert             string `json:"ssl_cert" jsonschema:"title=SSL Client Certificate" jsonschema_description:"PEM-encoded client certificate, for servers that authenticate clients by certificate. Requires SSL Client Key." jsonschema_extras:"multiline=true"`
	SSLKey              string `json:"ssl_key" jsonschema:"title=SSL Client Key" jsonschema_description:"PEM-encoded, unencrypted private key of the SSL Client Certificate." jsonschema_extras:"secret=true,multiline=true"`

	// How failures of the network are noticed and recovered from.
	NetworkTimeout string `json:"network_timeout" jsonschema:"title=Network Timeout,pattern=^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" jsonschema_description:"How long a connection may go silent before the capture considers it dead, as a duration such as 30s or 1m: the replication stream fails over after this long without a message from the server (which sends one at least every few seconds when asked), and TCP keepalives and TCP_USER_TIMEOUT end a query's connection to a host that stopped answering after about this long."`
	RetryTimeout   string `json:"retry_timeout" jsonschema:"title=Retry Timeout,pattern=^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" jsonschema_description:"How long the capture keeps reconnecting, with backoff, after the connection failed (a reset, a restarting server, a silent network) before it gives up with the error, as a duration such as 5m. Authentication, permission and configuration errors are never retried."`

	// Where the slot lives when the database fails over.
	FailoverSlot bool `json:"failover_slot,omitempty" jsonschema:"title=Failover Slot" jsonschema_description:"PostgreSQL 17 and later: create the replication slot with failover = true, so that standbys with sync_replication_slots = on keep a copy of it and the capture resumes on a promoted standby. Set synchronized_standby_slots on the primary to the standbys' physical slots, so that the capture never receives a change the standbys may lack."`

	// How values travel on the replication stream.
	ReplicationFormat string `json:"replication_format,omitempty" jsonschema:"title=Replication Format,enum=auto,enum=text" jsonschema_description:"auto (default): on PostgreSQL 14 and later, values are streamed in binary when every column of the captured tables has a type the connector reads in binary (built-in scalar types, enums, and domains over them), which costs the server less; otherwise in text. text: always in text. Documents are the same either way."`

	// The options below are Estuary's (estuary.go); CompatibilityNotes
	// says what those not honoured mean here.
	SourceTag                 string   `json:"source_tag,omitempty" jsonschema:"title=Source Tag" jsonschema_description:"When set, every document carries it as _meta/source/tag, to tell captures apart downstream."`
	FeatureFlags              string   `json:"feature_flags,omitempty" jsonschema:"title=Feature Flags" jsonschema_description:"Estuary's comma-separated feature flags; a no_ prefix turns one off. flatten_arrays (without multidimensional_arrays) flattens multidimensional arrays into one list; no_use_schema_inference drops x-infer-schema. Others are accepted and logged."`
	OversizedValues           string   `json:"oversized_values,omitempty" jsonschema:"title=Oversized Values" jsonschema_description:"What happens to a value over 8 MiB. emit (default): emitted whole. truncate: text and bytea are cut to 8 MiB, and json/jsonb become {\"flow_truncated\":true,\"original_size\":N}, as Estuary's connector does."`
	StatementTimeoutText      string   `json:"statement_timeout,omitempty" jsonschema:"title=Statement Timeout" jsonschema_description:"statement_timeout of the connector's queries, such as 30s or 5m; 0 turns it off. Empty: the server's setting."`
	DiscoverSchemas           []string `json:"discover_schemas,omitempty" jsonschema:"title=Discovery Schema Selection" jsonschema_description:"Discover only tables in these schemas. Empty: every schema."`
	MinBackfillXID            string   `json:"min_backfill_xid,omitempty" jsonschema:"title=Minimum Backfill XID" jsonschema_description:"Accepted for compatibility and ignored: backfills read every row."`
	ReadOnlyCapture           bool     `json:"read_only_capture,omitempty" jsonschema:"title=Read-Only Capture" jsonschema_description:"Accepted for compatibility and ignored: the connector writes watermarks to the watermarks table."`
	CaptureAsPartitions       bool     `json:"capture_as_partitions,omitempty" jsonschema:"title=Capture Partitioned Tables As Partitions" jsonschema_description:"Accepted for compatibility: partitions are captured as the publication publishes them (publish_via_partition_root)."`
	DiscoverUnpublishedTables bool     `json:"discover_unpublished_tables,omitempty" jsonschema:"title=Discover Unpublished Tables" jsonschema_description:"Accepted for compatibility: tables outside the publication are always discovered, and added to it when captured."`
	RediscoveryInterval       string   `json:"rediscovery_interval,omitempty" jsonschema:"title=Rediscovery Interval" jsonschema_description:"Accepted for compatibility and ignored: a table's schema is reported again whenever the replication stream shows that it changed."`
	DiscoverOnlyPublished     bool     `json:"discover_only_published,omitempty" jsonschema:"-"`
}

// NetworkTunnel configures how the database is reached through another host.
type NetworkTunnel struct {
	SSHForwarding *SSHForwarding `json:"sshForwarding,omitempty" jsonschema:"title=SSH Forwarding" jsonschema_description:"Forward the connection to the database through an SSH server."`
}

// SSHForwarding configures an SSH tunnel to the database. The database address
// is resolved and dialed by the SSH server, so it may be a name or address
// that is only meaningful inside the network behind it.
type SSHForwarding struct {
	SSHEndpoint string `json:"sshEndpoint" jsonschema:"required,title=SSH Endpoint,pattern=^ssh://.+@.+$" jsonschema_description:"The SSH server to tunnel through, as ssh://user@host[:port]. The port defaults to 22."`
	PrivateKey  string `json:"privateKey" jsonschema:"required,title=SSH Private Key" jsonschema_description:"The unencrypted private key (PEM or OpenSSH format) that authenticates the user of the SSH Endpoint." jsonschema_extras:"secret=true,multiline=true"`
	HostKey     string `json:"hostKey" jsonschema:"title=SSH Host Key" jsonschema_description:"The SSH server's public host key as in known_hosts or authorized_keys, such as ssh-ed25519 AAAA... When set, the tunnel is refused unless the server presents this key. When empty, any key is accepted and its fingerprint is logged."`
}

// Parse decodes and validates an endpoint configuration. Unknown and
// ill-typed fields are errors; empty fields get their defaults.
func Parse(raw []byte) (*Endpoint, error) {
	var e Endpoint
	if err := decodeStrict(raw, &e); err != nil {
		return nil, fmt.Errorf("endpoint configuration: %w", err)
	}
	e.applyDefaults()
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("endpoint configuration: %w", err)
	}
	return &e, nil
}

func (e *Endpoint) applyDefaults() {
	// Surrounding spaces are a copy-and-paste accident, never part of a name.
	e.Address = strings.TrimSpace(e.Address)
	e.applyEstuaryDefaults()
	if e.Database == "" {
		e.Database = DefaultDatabase
	}
	if e.User == "" {
		e.User = DefaultUser
	}
	a := &e.Advanced
	if a.BackfillChunkSize == 0 {
		a.BackfillChunkSize = DefaultBackfillChunkSize
	}
	if a.BackfillConnections == 0 {
		a.BackfillConnections = DefaultBackfillConnections
	}
	if a.PublicationName == "" {
		a.PublicationName = DefaultPublicationName
	}
	if a.SlotName == "" {
		a.SlotName = DefaultSlotName
	}
	if a.WatermarksTable == "" {
		a.WatermarksTable = DefaultWatermarksTable
	}
	if a.SSLMode == "" {
		a.SSLMode = DefaultSSLMode
	}
	if a.NetworkTimeout == "" {
		a.NetworkTimeout = FormatDuration(DefaultNetworkTimeout)
	}
	if a.RetryTimeout == "" {
		a.RetryTimeout = FormatDuration(DefaultRetryTimeout)
	}

	if t := e.NetworkTunnel; t != nil {
		// UIs send an empty tunnel object when no tunnel is configured.
		if f := t.SSHForwarding; f != nil {
			f.SSHEndpoint = strings.TrimSpace(f.SSHEndpoint)
			if f.SSHEndpoint == "" && f.PrivateKey == "" && f.HostKey == "" {
				t.SSHForwarding = nil
			}
		}
		if t.SSHForwarding == nil {
			e.NetworkTunnel = nil
		}
	}
}

// Validate reports every problem of the configuration at once, each naming
// the field and how to fix it. An empty sslmode is accepted as "prefer".
func (e *Endpoint) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	if e.Address == "" {
		add(errors.New(`"address" is required: set it to the database's host or host:port, such as "db.example.com:5432"`))
	} else if _, _, err := splitAddress(e.Address); err != nil {
		add(fmt.Errorf(`"address" %w`, err))
	}
	add(checkName("database", e.Database))
	add(checkName("user", e.User))
	add(e.Advanced.validate())
	if e.NetworkTunnel != nil && e.NetworkTunnel.SSHForwarding != nil {
		add(e.NetworkTunnel.SSHForwarding.validate())
	}
	errs = append(errs, e.validateEstuary()...)
	return errors.Join(errs...)
}

func (a *Advanced) validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	if a.BackfillChunkSize <= 0 {
		add(fmt.Errorf(`"advanced.backfill_chunk_size" must be a positive number of rows, got %d; leave it empty for the default of %d`,
			a.BackfillChunkSize, DefaultBackfillChunkSize))
	}
	if a.BackfillConnections <= 0 || a.BackfillConnections > maxBackfillConnections {
		add(fmt.Errorf(`"advanced.backfill_connections" must be between 1 and %d, got %d; leave it empty for the default of %d`,
			maxBackfillConnections, a.BackfillConnections, DefaultBackfillConnections))
	}
	add(checkIdentifier("advanced.publicationName", a.PublicationName))
	add(checkSlotName(a.SlotName))
	if _, _, err := splitTableName(a.WatermarksTable); err != nil {
		add(fmt.Errorf(`"advanced.watermarksTable" must be schema-qualified as <schema>.<table>, such as %q: %w`, DefaultWatermarksTable, err))
	}
	for entry := range strings.SplitSeq(a.SkipBackfills, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		if _, _, err := splitTableName(entry); err != nil {
			add(fmt.Errorf(`"advanced.skip_backfills" must be a comma-separated list of <schema>.<table> names, such as "public.orders, sales.items": entry %w`, err))
		}
	}
	if a.ReplicationFormat != "" && a.ReplicationFormat != ReplicationAuto && a.ReplicationFormat != ReplicationText {
		add(fmt.Errorf(`"advanced.replication_format" %q is not a format: use %q (binary where possible, the default) or %q`, a.ReplicationFormat, ReplicationAuto, ReplicationText))
	}
	if a.SSLMode != "" && !slices.Contains(sslModes, a.SSLMode) {
		add(fmt.Errorf(`"advanced.sslmode" %q is not a valid mode: use one of %s`, a.SSLMode, strings.Join(sslModes, ", ")))
	}
	if a.SSLCA != "" {
		if _, err := parseCertPool(a.SSLCA); err != nil {
			add(fmt.Errorf(`"advanced.ssl_ca" %w`, err))
		}
	}
	switch {
	case a.SSLCert != "" && a.SSLKey == "":
		add(errors.New(`"advanced.ssl_cert" is set without "advanced.ssl_key": a client certificate needs its private key`))
	case a.SSLCert == "" && a.SSLKey != "":
		add(errors.New(`"advanced.ssl_key" is set without "advanced.ssl_cert": a client key needs its certificate`))
	case a.SSLCert != "":
		if _, err := parseClientCertificate(a.SSLCert, a.SSLKey); err != nil {
			add(err)
		}
	}
	_, err := parseTimeout("advanced.network_timeout", a.NetworkTimeout, time.Second, DefaultNetworkTimeout)
	add(err)
	_, err = parseTimeout("advanced.retry_timeout", a.RetryTimeout, time.Second, DefaultRetryTimeout)
	add(err)
	return errors.Join(errs...)
}

// parseTimeout parses a duration field, at least least long; empty means
// def.
func parseTimeout(field, value string, least, def time.Duration) (time.Duration, error) {
	if value == "" {
		return def, nil
	}
	d, err := time.ParseDuration(value)
	if err != nil {
		return 0, fmt.Errorf("%q is %q, which is not a duration: write it as a number with a unit, such as %q", field, value, FormatDuration(def))
	}
	if d < least {
		return 0, fmt.Errorf("%q is %s, shorter than the least allowed, %s; leave it empty for the default of %s", field, d, least, FormatDuration(def))
	}
	return d, nil
}

// FormatDuration writes d as a user would: "5m" rather than "5m0s".
func FormatDuration(d time.Duration) string {
	switch {
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d >= time.Second && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// NetworkTimeout returns advanced.network_timeout. Its result is meaningful
// only for a configuration that passed Validate.
func (e *Endpoint) NetworkTimeout() time.Duration {
	d, _ := parseTimeout("", e.Advanced.NetworkTimeout, 0, DefaultNetworkTimeout)
	return d
}

// RetryTimeout returns advanced.retry_timeout. Its result is meaningful only
// for a configuration that passed Validate.
func (e *Endpoint) RetryTimeout() time.Duration {
	d, _ := parseTimeout("", e.Advanced.RetryTimeout, 0, DefaultRetryTimeout)
	return d
}

// validate checks the tunnel settings with the tunnel's own parsers, so that
// what passes here is what sshtunnel.Open accepts.
func (f *SSHForwarding) validate() error {
	var errs []error
	if f.SSHEndpoint == "" {
		errs = append(errs, errors.New(`"networkTunnel.sshForwarding.sshEndpoint" is required for an SSH tunnel: set it to ssh://user@host[:port]`))
	} else if _, _, err := sshtunnel.ParseEndpoint(f.SSHEndpoint); err != nil {
		errs = append(errs, err)
	}
	if _, err := sshtunnel.ParsePrivateKey(f.PrivateKey); err != nil {
		errs = append(errs, err)
	}
	if _, err := sshtunnel.ParseHostKeys(f.HostKey); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// HostPort returns the host and port of the database. Its result is
// meaningful only for a configuration that passed Validate.
func (e *Endpoint) HostPort() (host string, port uint16) {
	host, port, _ = splitAddress(e.Address)
	return host, port
}

// Watermarks returns the schema and name of the watermarks table. Its result
// is meaningful only for a configuration that passed Validate.
func (e *Endpoint) Watermarks() (schema, table string) {
	schema, table, _ = splitTableName(e.Advanced.WatermarksTable)
	return schema, table
}

// SkipBackfillTables returns the tables named in skip_backfills as
// "schema.table", without surrounding spaces, empty entries or duplicates.
// Names are exact (case-sensitive), as they appear in the catalog.
func (e *Endpoint) SkipBackfillTables() []string {
	var tables []string
	for entry := range strings.SplitSeq(e.Advanced.SkipBackfills, ",") {
		schema, table, err := splitTableName(strings.TrimSpace(entry))
		if err != nil {
			continue
		}
		name := schema + "." + table
		if !slices.Contains(tables, name) {
			tables = append(tables, name)
		}
	}
	return tables
}

// Redacted returns a copy of the configuration that is safe to log: secrets
// that are set are replaced by "REDACTED", and empty ones stay empty so the
// log still shows whether they were given.
func (e *Endpoint) Redacted() Endpoint {
	const redacted = "REDACTED"
	c := *e
	if c.Password != "" {
		c.Password = redacted
	}
	if c.Advanced.SSLKey != "" {
		c.Advanced.SSLKey = redacted
	}
	if e.Credentials != nil {
		creds := *e.Credentials
		for _, secret := range []*string{&creds.Password, &creds.AWSSecretAccessKey, &creds.AWSSessionToken, &creds.GCPAccessToken, &creds.AzureAccessToken} {
			if *secret != "" {
				*secret = redacted
			}
		}
		c.Credentials = &creds
	}
	if e.NetworkTunnel != nil {
		tunnel := *e.NetworkTunnel
		if f := tunnel.SSHForwarding; f != nil {
			forwarding := *f
			if forwarding.PrivateKey != "" {
				forwarding.PrivateKey = redacted
			}
			tunnel.SSHForwarding = &forwarding
		}
		c.NetworkTunnel = &tunnel
	}
	return c
}

// sslMode returns the effective sslmode, which is libpq's default when unset.
func (a *Advanced) sslMode() string {
	if a.SSLMode == "" {
		return DefaultSSLMode
	}
	return a.SSLMode
}

// splitAddress splits "host", "host:port", "[ipv6]" or "[ipv6]:port" into
// host and port.
func splitAddress(address string) (host string, port uint16, err error) {
	if strings.Contains(address, "://") {
		// The URL is deliberately not echoed: it may hold a password.
		return "", 0, errors.New(`must be host or host:port, not a URL: put the database name in "database" and the credentials in "user" and "password"`)
	}
	if ip := net.ParseIP(address); ip != nil && strings.Contains(address, ":") {
		// Refused because "2001:db8::1:5432" could mean either port.
		return "", 0, fmt.Errorf("%q is an IPv6 address without brackets: write it as [%s], or [%s]:5432 with a port", address, address, address)
	}
	if inner, ok := strings.CutPrefix(address, "["); ok && strings.HasSuffix(inner, "]") {
		address = strings.TrimSuffix(inner, "]")
		if net.ParseIP(address) == nil {
			return "", 0, fmt.Errorf("has %q in brackets, which is not an IP address; only IPv6 addresses are written in brackets", address)
		}
		return address, DefaultPort, nil
	}
	if !strings.Contains(address, ":") {
		host = address
		port = DefaultPort
	} else {
		var portText string
		host, portText, err = net.SplitHostPort(address)
		if err != nil {
			return "", 0, fmt.Errorf("%q is not of the form host or host:port (write an IPv6 address with a port as [2001:db8::1]:5432)", address)
		}
		n, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || n == 0 {
			return "", 0, fmt.Errorf("has port %q, which is invalid: use a number from 1 to 65535, or omit it for %d", portText, DefaultPort)
		}
		port = uint16(n)
		if strings.HasPrefix(address, "[") && net.ParseIP(host) == nil {
			return "", 0, fmt.Errorf("has %q in brackets, which is not an IP address; only IPv6 addresses are written in brackets", host)
		}
	}
	if host == "" {
		return "", 0, errors.New("has no host name")
	}
	// Commas would make pgconn try several hosts, and a slash a Unix socket.
	if i := strings.IndexAny(host, " \t\r\n,/@?#"); i >= 0 {
		return "", 0, fmt.Errorf("has host %q, which contains %q, a character host names cannot contain", host, string(host[i]))
	}
	return host, port, nil
}

// splitTableName splits "schema.table". Names are taken as written, without
// SQL quoting or case folding, so they match the catalog exactly.
func splitTableName(name string) (schema, table string, err error) {
	schema, table, ok := strings.Cut(name, ".")
	switch {
	case !ok:
		return "", "", fmt.Errorf("%q has no schema", name)
	case strings.Contains(table, "."):
		return "", "", fmt.Errorf("%q has more than one dot", name)
	case strings.TrimSpace(schema) != schema || strings.TrimSpace(table) != table:
		return "", "", fmt.Errorf("%q has spaces around the dot", name)
	case schema == "" || table == "":
		return "", "", fmt.Errorf("%q has an empty schema or table name", name)
	case strings.IndexByte(name, 0) >= 0:
		// PostgreSQL names cannot hold one, and quoting would drop it.
		return "", "", fmt.Errorf("%q contains a NUL character", name)
	}
	return schema, table, nil
}

// maxIdentifierLength is PostgreSQL's NAMEDATALEN-1. Longer names are
// silently truncated by the server, so the connector would later look for an
// object that does not exist under the configured name.
const maxIdentifierLength = 63

func checkName(field, value string) error {
	switch {
	case value == "":
		return fmt.Errorf("%q must not be empty", field)
	case strings.IndexByte(value, 0) >= 0:
		return fmt.Errorf("%q must not contain a NUL character", field)
	}
	return nil
}

func checkIdentifier(field, value string) error {
	if err := checkName(field, value); err != nil {
		return err
	}
	if len(value) > maxIdentifierLength {
		return fmt.Errorf("%q is %d bytes long; PostgreSQL names are at most %d bytes", field, len(value), maxIdentifierLength)
	}
	return nil
}

// checkSlotName applies the server's rule for replication slot names, which
// otherwise fails only when the slot is first created.
func checkSlotName(name string) error {
	valid := name != "" && len(name) <= maxIdentifierLength
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			valid = false
		}
	}
	if !valid {
		return fmt.Errorf(`"advanced.slotName" %q is not a valid replication slot name: use only lower-case letters, digits and underscores, at most %d of them, such as %q`,
			name, maxIdentifierLength, DefaultSlotName)
	}
	return nil
}

// parseCertPool parses one or more PEM certificates into a pool.
func parseCertPool(pemText string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	rest := []byte(pemText)
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if n == 1 {
				return nil, errors.New(`contains no PEM certificate: paste the CA certificate, from "-----BEGIN CERTIFICATE-----" to "-----END CERTIFICATE-----"`)
			}
			return pool, nil
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf(`has a %q in PEM block %d, where only a "CERTIFICATE" belongs`, block.Type, n)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("has a certificate in PEM block %d that cannot be parsed: %w", n, err)
		}
		pool.AddCert(cert)
	}
}

// parseClientCertificate parses the client certificate and key. Its errors
// never quote the key.
func parseClientCertificate(certPEM, keyPEM string) (tls.Certificate, error) {
	if block, _ := pem.Decode([]byte(keyPEM)); block == nil {
		return tls.Certificate{}, errors.New(`"advanced.ssl_key" contains no PEM private key: paste it from "-----BEGIN ... PRIVATE KEY-----" to the matching END line`)
	} else if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
		return tls.Certificate{}, errors.New(`"advanced.ssl_key" is encrypted: provide the key without a passphrase`)
	}
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf(`"advanced.ssl_cert" and "advanced.ssl_key" are not a usable certificate and key pair: %w`, err)
	}
	return cert, nil
}
