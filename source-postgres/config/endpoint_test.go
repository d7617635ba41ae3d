package config

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseDefaults(t *testing.T) {
	e, err := Parse([]byte(`{"address": " db.example.com "}`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Endpoint{
		Address:  "db.example.com",
		Database: DefaultDatabase,
		User:     DefaultUser,
		Advanced: Advanced{
			BackfillChunkSize:   DefaultBackfillChunkSize,
			BackfillConnections: DefaultBackfillConnections,
			PublicationName:     DefaultPublicationName,
			SlotName:            DefaultSlotName,
			WatermarksTable:     DefaultWatermarksTable,
			SSLMode:             DefaultSSLMode,
			NetworkTimeout:      "30s",
			RetryTimeout:        "5m",
			OversizedValues:     OversizedEmit,
		},
	}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("Parse = %+v, want %+v", e, want)
	}
}

func TestParseFullConfig(t *testing.T) {
	doc, secrets := fullConfig(t)
	e, err := Parse(mustJSON(t, doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if e.Password != secrets.password || e.Advanced.SSLKey != secrets.sslKey || e.NetworkTunnel.SSHForwarding.PrivateKey != secrets.sshKey {
		t.Error("Parse lost a secret")
	}
	if e.Advanced.BackfillChunkSize != 1000 || e.Advanced.SSLMode != "verify-full" || e.NetworkTunnel.SSHForwarding.SSHEndpoint != "ssh://flow@bastion.example.com:2222" {
		t.Errorf("Parse = %+v, want the configured values", e)
	}
}

func TestParseEmptyTunnelIsNoTunnel(t *testing.T) {
	for _, tunnel := range []string{
		`{}`,
		`null`,
		`{"sshForwarding": null}`,
		`{"sshForwarding": {"sshEndpoint": "", "privateKey": ""}}`,
	} {
		e, err := Parse([]byte(`{"address": "db", "networkTunnel": ` + tunnel + `}`))
		if err != nil {
			t.Errorf("networkTunnel %s: Parse: %v", tunnel, err)
		} else if e.NetworkTunnel != nil {
			t.Errorf("networkTunnel %s: NetworkTunnel = %+v, want nil", tunnel, e.NetworkTunnel)
		}
	}
}

// TestParseErrors changes one thing in an otherwise valid configuration that
// holds every kind of secret, and checks that the error names the field and
// says how to fix it, and quotes no secret.
func TestParseErrors(t *testing.T) {
	encryptedSSHKey, _ := newSSHKey(t, "passphrase")
	ca := newTestCA(t, "Other CA")
	otherCert, otherKey := ca.issue(t, "someone", 0)

	for _, tc := range []struct {
		name   string
		path   string // set to value; a nil value deletes the field
		value  any
		raw    string   // replaces the whole document when not empty
		errors []string // substrings, all of which the error must contain
	}{
		// Decoding.
		{name: "empty", raw: " ", errors: []string{"empty document"}},
		{name: "not JSON", raw: `{"address": "db",}`, errors: []string{"not valid JSON"}},
		{name: "not an object", raw: `["db"]`, errors: []string{"must be a JSON object"}},
		{name: "unknown field", path: "adress", value: "db", //nolint:misspell // the typo is the unknown field under test
			errors: []string{`"adress" is not a known field`, "known fields are address, database, user, password, credentials, historyMode, discoveryFilters, advanced, networkTunnel"}}, //nolint:misspell // as above
		{name: "unknown nested field", path: "advanced.chunk_size", value: 10,
			errors: []string{`"advanced.chunk_size" is not a known field`, "backfill_chunk_size, backfill_connections, publicationName"}},
		{name: "unknown tunnel field", path: "networkTunnel.sshForwarding.user", value: "flow",
			errors: []string{`"networkTunnel.sshForwarding.user" is not a known field`, "sshEndpoint, privateKey, hostKey"}},
		{name: "wrong case", path: "Address", value: "db",
			errors: []string{`"Address" is not a known field; did you mean "address"?`}},
		{name: "integer as string", path: "advanced.backfill_chunk_size", value: "abc",
			errors: []string{`"advanced.backfill_chunk_size" must be an integer, got "abc"`}},
		{name: "fractional integer", path: "advanced.backfill_chunk_size", value: 10.5,
			errors: []string{`"advanced.backfill_chunk_size" must be an integer, got 10.5`}},
		{name: "string as number", path: "address", value: 5432,
			errors: []string{`"address" must be a string, got 5432`}},
		{name: "secret of wrong type", path: "password", value: json.RawMessage(`9876543210`),
			errors: []string{`"password" must be a string, got a number`}},
		{name: "long value is shortened", path: "advanced.sslmode", value: []string{"verify-full", "verify-full", "verify-full", "verify-full"},
			errors: []string{`"advanced.sslmode" must be a string, got an array starting ["verify-full","verify-full","verify-ful...`}},
		{name: "object as string", path: "advanced", value: "verify-full",
			errors: []string{`"advanced" must be a JSON object, got "verify-full"`}},
		{name: "duplicate field", raw: `{"address": "a", "address": "b"}`,
			errors: []string{`"address" is given more than once`}},
		{name: "several decoding errors at once", raw: `{"address": 1, "advanced": {"slot": "x"}}`,
			errors: []string{`"address" must be a string`, `"advanced.slot" is not a known field`}},

		// Validation.
		{name: "missing address", path: "address", value: nil, errors: []string{`"address" is required`}},
		{name: "port zero", path: "address", value: "db:0", errors: []string{`"address"`, `has port "0", which is invalid`}},
		{name: "port too large", path: "address", value: "db:65536", errors: []string{`"address"`, `has port "65536", which is invalid`}},
		{name: "port not a number", path: "address", value: "db:pg", errors: []string{`"address"`, `has port "pg", which is invalid`}},
		{name: "no host", path: "address", value: ":5432", errors: []string{`"address"`, "no host"}},
		{name: "address is a URL", path: "address", value: "postgres://capture:hunter2-do-not-leak@db/shop",
			errors: []string{`"address" must be host or host:port, not a URL`}},
		{name: "several hosts", path: "address", value: "a,b:5432", errors: []string{`"address" has host "a,b", which contains ","`}},
		{name: "unbracketed IPv6", path: "address", value: "fe80::1:5432",
			errors: []string{`"address" "fe80::1:5432" is an IPv6 address without brackets: write it as [fe80::1:5432]`}},
		{name: "malformed IPv6", path: "address", value: "fe80::1::5432", errors: []string{`"address"`, "[2001:db8::1]:5432"}},
		{name: "brackets around a name", path: "address", value: "[db]:5432", errors: []string{`"address" has "db" in brackets`}},
		{name: "negative chunk size", path: "advanced.backfill_chunk_size", value: -5,
			errors: []string{`"advanced.backfill_chunk_size" must be a positive number of rows, got -5`}},
		{name: "negative backfill connections", path: "advanced.backfill_connections", value: -1,
			errors: []string{`"advanced.backfill_connections" must be between 1 and 64, got -1`}},
		{name: "too many backfill connections", path: "advanced.backfill_connections", value: 1000,
			errors: []string{`"advanced.backfill_connections" must be between 1 and 64, got 1000`}},
		{name: "network_timeout not a duration", path: "advanced.network_timeout", value: "30",
			errors: []string{`"advanced.network_timeout" is "30", which is not a duration: write it as a number with a unit, such as "30s"`}},
		{name: "retry_timeout too short", path: "advanced.retry_timeout", value: "10ms",
			errors: []string{`"advanced.retry_timeout" is 10ms, shorter than the least allowed, 1s; leave it empty for the default of 5m`}},
		{name: "bad replication format", path: "advanced.replication_format", value: "binary",
			errors: []string{`"advanced.replication_format" "binary" is not a format: use "auto" (binary where possible, the default) or "text"`}},
		{name: "bad sslmode", path: "advanced.sslmode", value: "verify_full",
			errors: []string{`"advanced.sslmode" "verify_full" is not a valid mode`, "disable, allow, prefer, require, verify-ca, verify-full"}},
		{name: "unqualified watermarks table", path: "advanced.watermarksTable", value: "flow_watermarks",
			errors: []string{`"advanced.watermarksTable" must be schema-qualified`, `"flow_watermarks" has no schema`}},
		{name: "watermarks table with two dots", path: "advanced.watermarksTable", value: "db.public.w",
			errors: []string{`"advanced.watermarksTable"`, "more than one dot"}},
		{name: "malformed skip_backfills entry", path: "advanced.skip_backfills", value: "public.a, b",
			errors: []string{`"advanced.skip_backfills"`, `entry "b" has no schema`}},
		{name: "empty skip_backfills table", path: "advanced.skip_backfills", value: "public.",
			errors: []string{`"advanced.skip_backfills"`, `"public." has an empty schema or table name`}},
		{name: "NUL in watermarks table", path: "advanced.watermarksTable", value: "public.flow\x00marks",
			errors: []string{`"advanced.watermarksTable"`, "contains a NUL character"}},
		{name: "bad slot name", path: "advanced.slotName", value: "Flow-Slot",
			errors: []string{`"advanced.slotName" "Flow-Slot" is not a valid replication slot name`}},
		{name: "long publication name", path: "advanced.publicationName", value: strings.Repeat("p", 64),
			errors: []string{`"advanced.publicationName" is 64 bytes long`}},
		{name: "ssl_ca not PEM", path: "advanced.ssl_ca", value: "MIIBszCCAVmgAwIBAgIU",
			errors: []string{`"advanced.ssl_ca" contains no PEM certificate`}},
		{name: "ssl_ca holds a key", path: "advanced.ssl_ca", value: otherKey,
			errors: []string{`"advanced.ssl_ca"`, `has a "PRIVATE KEY" in PEM block 1`}},
		{name: "ssl_cert without ssl_key", path: "advanced.ssl_key", value: nil,
			errors: []string{`"advanced.ssl_cert" is set without "advanced.ssl_key"`}},
		{name: "ssl_key without ssl_cert", path: "advanced.ssl_cert", value: nil,
			errors: []string{`"advanced.ssl_key" is set without "advanced.ssl_cert"`}},
		{name: "ssl_key of another certificate", path: "advanced.ssl_cert", value: otherCert,
			errors: []string{`"advanced.ssl_cert" and "advanced.ssl_key" are not a usable certificate and key pair`}},
		{name: "ssl_key not PEM", path: "advanced.ssl_key", value: "hunter2-do-not-leak",
			errors: []string{`"advanced.ssl_key" contains no PEM private key`}},
		{name: "sshEndpoint without scheme", path: "networkTunnel.sshForwarding.sshEndpoint", value: "flow@bastion:22",
			errors: []string{"networkTunnel.sshForwarding.sshEndpoint", "ssh://user@host[:port]"}},
		{name: "sshEndpoint without user", path: "networkTunnel.sshForwarding.sshEndpoint", value: "ssh://bastion",
			errors: []string{"networkTunnel.sshForwarding.sshEndpoint", "user"}},
		{name: "sshEndpoint with password", path: "networkTunnel.sshForwarding.sshEndpoint", value: "ssh://flow:hunter2-do-not-leak@bastion",
			errors: []string{"networkTunnel.sshForwarding.sshEndpoint", "password"}},
		{name: "sshEndpoint bad port", path: "networkTunnel.sshForwarding.sshEndpoint", value: "ssh://flow@bastion:70000",
			errors: []string{"networkTunnel.sshForwarding.sshEndpoint", `"70000"`}},
		{name: "sshEndpoint without privateKey", path: "networkTunnel.sshForwarding.privateKey", value: nil,
			errors: []string{`"networkTunnel.sshForwarding.privateKey" is required`}},
		{name: "privateKey without sshEndpoint", path: "networkTunnel.sshForwarding.sshEndpoint", value: nil,
			errors: []string{`"networkTunnel.sshForwarding.sshEndpoint" is required`}},
		{name: "privateKey with passphrase", path: "networkTunnel.sshForwarding.privateKey", value: encryptedSSHKey,
			errors: []string{`"networkTunnel.sshForwarding.privateKey" is protected by a passphrase`}},
		{name: "privateKey not a key", path: "networkTunnel.sshForwarding.privateKey", value: "hunter2-do-not-leak",
			errors: []string{`"networkTunnel.sshForwarding.privateKey" is not a valid SSH private key`}},
		{name: "hostKey not a key", path: "networkTunnel.sshForwarding.hostKey", value: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
			errors: []string{`"networkTunnel.sshForwarding.hostKey" is not a public key`}},
		{name: "all problems at once", raw: `{"address": "db:0", "advanced": {"backfill_chunk_size": -1, "sslmode": "on", "slotName": "a-b"}}`,
			errors: []string{`"address"`, `"advanced.backfill_chunk_size"`, `"advanced.sslmode"`, `"advanced.slotName"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, secrets := fullConfig(t)
			raw := []byte(tc.raw)
			if tc.raw == "" {
				setPath(doc, tc.path, tc.value)
				raw = mustJSON(t, doc)
			}
			_, err := Parse(raw)
			if err == nil {
				t.Fatalf("Parse succeeded, want an error containing %q", tc.errors)
			}
			msg := err.Error()
			for _, want := range tc.errors {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q\ndoes not contain %q", msg, want)
				}
			}
			if leak := secrets.leaks(msg); leak != "" {
				t.Errorf("error %q\ncontains the secret %q", msg, leak)
			}
		})
	}
}

func TestValidateAcceptsZeroSSLMode(t *testing.T) {
	e := Endpoint{Address: "db", Database: "d", User: "u", Advanced: Advanced{
		BackfillChunkSize: 1, BackfillConnections: 1, PublicationName: "p", SlotName: "s", WatermarksTable: "public.w",
	}}
	if err := e.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := (&Endpoint{}).Validate(); err == nil {
		t.Error("Validate of an empty Endpoint succeeded")
	}
}

func TestHostPort(t *testing.T) {
	for _, tc := range []struct {
		address string
		host    string
		port    uint16
	}{
		{"db.example.com", "db.example.com", 5432},
		{"db.example.com:6543", "db.example.com", 6543},
		{"10.1.2.3", "10.1.2.3", 5432},
		{"10.1.2.3:1", "10.1.2.3", 1},
		{"[::1]:5433", "::1", 5433},
		{"[2001:db8::1]", "2001:db8::1", 5432},
	} {
		e := Endpoint{Address: tc.address}
		if host, port := e.HostPort(); host != tc.host || port != tc.port {
			t.Errorf("HostPort of %q = %q, %d, want %q, %d", tc.address, host, port, tc.host, tc.port)
		}
	}
}

func TestWatermarks(t *testing.T) {
	e := Endpoint{Advanced: Advanced{WatermarksTable: "Flow.Marks"}}
	if schema, table := e.Watermarks(); schema != "Flow" || table != "Marks" {
		t.Errorf("Watermarks = %q, %q, want %q, %q", schema, table, "Flow", "Marks")
	}
}

func TestSkipBackfillTables(t *testing.T) {
	for _, tc := range []struct {
		list string
		want []string
	}{
		{"", nil},
		{"public.a", []string{"public.a"}},
		{" public.a ,sales.Items,, public.a,", []string{"public.a", "sales.Items"}},
	} {
		e := Endpoint{Advanced: Advanced{SkipBackfills: tc.list}}
		if got := e.SkipBackfillTables(); !slices.Equal(got, tc.want) {
			t.Errorf("SkipBackfillTables of %q = %q, want %q", tc.list, got, tc.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	doc, secrets := fullConfig(t)
	e, err := Parse(mustJSON(t, doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	original := *e
	originalForwarding := *e.NetworkTunnel.SSHForwarding

	r := e.Redacted()
	if r.Password != "REDACTED" || r.Advanced.SSLKey != "REDACTED" || r.NetworkTunnel.SSHForwarding.PrivateKey != "REDACTED" {
		t.Errorf("Redacted left a secret: %+v", r)
	}
	if leak := secrets.leaks(string(mustJSON(t, r))); leak != "" {
		t.Errorf("Redacted contains the secret %q", leak)
	}
	if r.Address != e.Address || r.Advanced.SSLCert != e.Advanced.SSLCert || r.NetworkTunnel.SSHForwarding.HostKey != e.NetworkTunnel.SSHForwarding.HostKey {
		t.Errorf("Redacted changed a field that is not secret: %+v", r)
	}
	if e.Password != original.Password || *e.NetworkTunnel.SSHForwarding != originalForwarding {
		t.Error("Redacted modified the original")
	}

	empty := (&Endpoint{Address: "db"}).Redacted()
	if empty.Password != "" {
		t.Errorf("Redacted password of an empty password = %q, want it empty", empty.Password)
	}
}

func TestParseHostKeyForms(t *testing.T) {
	_, key := newSSHKey(t, "")
	_, other := newSSHKey(t, "")
	for _, hostKey := range []string{
		key,
		key + " root@bastion\n",
		"bastion.example.com " + key,
		"[bastion.example.com]:2222,10.0.0.1 " + key,
		key + "\n" + other + "\n",
	} {
		doc := map[string]any{"address": "db", "networkTunnel": map[string]any{"sshForwarding": map[string]any{
			"sshEndpoint": "ssh://flow@bastion", "privateKey": mustSSHKey(t), "hostKey": hostKey,
		}}}
		if _, err := Parse(mustJSON(t, doc)); err != nil {
			t.Errorf("hostKey %q: %v", hostKey, err)
		}
	}
}

func mustSSHKey(t *testing.T) string {
	private, _ := newSSHKey(t, "")
	return private
}
