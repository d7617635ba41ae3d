package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// TestBadInput runs the real binary on each kind of bad configuration or
// unusable database, for every command it applies to. Each must exit
// non-zero, without a panic, naming what is wrong and how to fix it on the
// last line of stderr.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY)")
	bin := newConnectorBin(t, "LOG_FORMAT=json")
	key, _ := testsupport.GenerateKey(t, "ed25519-openssh")

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close() //nolint:errcheck // only its free port is wanted; nothing listens there now

	// A database that the public may not connect to.
	private := f.pg.NewDatabase(t)
	f.pg.Exec(t, private, "REVOKE CONNECT ON DATABASE "+private+" FROM PUBLIC")
	// A user that may read the table but lacks the REPLICATION attribute.
	reader := f.slot + "_reader"
	f.exec(t, fmt.Sprintf("CREATE ROLE %[1]s LOGIN PASSWORD 'secret'; GRANT SELECT ON public.t TO %[1]s", reader))
	t.Cleanup(func() {
		f.pg.Exec(t, f.db, "DROP OWNED BY "+reader)
		f.pg.Exec(t, "postgres", "DROP ROLE "+reader)
	})

	all := []string{"discover", "validate", "open", "capture"}
	for _, tc := range []struct {
		name     string
		config   func(cfg, advanced map[string]any)
		commands []string
		want     []string
	}{{
		name:     "missing address",
		config:   func(cfg, _ map[string]any) { delete(cfg, "address") },
		commands: all,
		want:     []string{`"address" is required`},
	}, {
		name:     "non-numeric chunk size",
		config:   func(_, adv map[string]any) { adv["backfill_chunk_size"] = "abc" },
		commands: all,
		want:     []string{`"advanced.backfill_chunk_size" must be an integer, got "abc"`},
	}, {
		name:     "negative chunk size",
		config:   func(_, adv map[string]any) { adv["backfill_chunk_size"] = -5 },
		commands: all,
		want:     []string{`"advanced.backfill_chunk_size" must be a positive number of rows, got -5`},
	}, {
		name:     "bad sslmode",
		config:   func(_, adv map[string]any) { adv["sslmode"] = "sometimes" },
		commands: all,
		want:     []string{`"advanced.sslmode" "sometimes" is not a valid mode: use one of disable, allow, prefer, require, verify-ca, verify-full`},
	}, {
		name: "malformed sshEndpoint",
		config: func(cfg, _ map[string]any) {
			cfg["networkTunnel"] = map[string]any{"sshForwarding": map[string]any{"sshEndpoint": "bastion.example.com", "privateKey": key}}
		},
		commands: all,
		want:     []string{"networkTunnel.sshForwarding.sshEndpoint", "ssh://user@host[:port]"},
	}, {
		name: "malformed privateKey",
		config: func(cfg, _ map[string]any) {
			cfg["networkTunnel"] = map[string]any{"sshForwarding": map[string]any{"sshEndpoint": "ssh://flow@127.0.0.1:22", "privateKey": "my key"}}
		},
		commands: all,
		want:     []string{`"networkTunnel.sshForwarding.privateKey" is not a valid SSH private key in PEM or OpenSSH format`},
	}, {
		name:     "wrong password",
		config:   func(cfg, _ map[string]any) { cfg["password"] = "wrong" },
		commands: all,
		want:     []string{`password authentication failed for user "postgres": check "user" and "password"`},
	}, {
		name:     "database missing",
		config:   func(cfg, _ map[string]any) { cfg["database"] = "nosuch" },
		commands: all,
		want:     []string{fmt.Sprintf(`database "nosuch" does not exist on the server at %s: check "database"`, f.pg.Addr())},
	}, {
		name: "no CONNECT privilege",
		config: func(cfg, _ map[string]any) {
			cfg["database"], cfg["user"], cfg["password"] = private, reader, "secret"
		},
		commands: all,
		want:     []string{fmt.Sprintf(`user %q may not connect to database %q because it lacks the CONNECT privilege: run GRANT CONNECT ON DATABASE "%s" TO "%s"`, reader, private, private, reader)},
	}, {
		name:     "connection refused",
		config:   func(cfg, _ map[string]any) { cfg["address"] = closedAddr },
		commands: all,
		want:     []string{fmt.Sprintf(`nothing accepts connections at %s (connection refused): check "address"`, closedAddr)},
	}, {
		name:   "user without REPLICATION",
		config: func(cfg, _ map[string]any) { cfg["user"], cfg["password"] = reader, "secret" },
		// Discovery and the capture command poll instead (polling_test.go).
		commands: []string{"validate", "open"},
		want:     []string{fmt.Sprintf(`user %q lacks the REPLICATION attribute; run ALTER USER "%s" WITH REPLICATION`, reader, reader)},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := f.config()
			adv := maps.Clone(cfg["advanced"].(map[string]any))
			cfg["advanced"] = adv
			tc.config(cfg, adv)
			for _, command := range tc.commands {
				expectFailure(t, command, runCommand(t, bin, command, cfg), tc.want...)
			}
		})
	}
}

// runCommand runs one of discover, validate and open, as the runtime does,
// or capture, as a person does, on the table public.t.
func runCommand(t *testing.T, bin *connectorBin, command string, cfg map[string]any) binRun {
	t.Helper()
	switch command {
	case "discover":
		return bin.request(t, discoverRequest(cfg))
	case "validate":
		return bin.request(t, validateRequest(cfg, "public.t"))
	case "open":
		return bin.request(t, openRequest(cfg, "public.t"))
	case "capture":
		path := filepath.Join(t.TempDir(), "config.json")
		raw, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return bin.run(t, "", "capture", "--config", path, "--tables", "public.t")
	}
	t.Fatalf("unknown command %q", command)
	return binRun{}
}

// A server that accepts the connection but never answers, as a firewall
// that drops packets or a wrong port of another service look, fails within
// the connect timeout.
func TestBadInputNoAnswer(t *testing.T) {
	t.Parallel()
	// Read and never answer, holding the connection open.
	addr := testsupport.ServeTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) }) //nolint:errcheck // a test server; the client ends the connection
	cfg := map[string]any{"address": addr, "user": "flow", "password": "secret", "database": "db"}
	r := newConnectorBin(t).request(t, discoverRequest(cfg))
	expectFailure(t, "discover", r, fmt.Sprintf("the database at %s did not respond before the connection attempt timed out", addr), `check "address"`)
	if r.took > 30*time.Second {
		t.Errorf("giving up took %s", r.took)
	}
}

// A server without logical replication is refused at validate and open of
// replicated bindings; discovery and the capture command offer polled
// bindings instead (polling_test.go).
func TestBadInputWalLevelReplica(t *testing.T) {
	t.Parallel()
	pg := testsupport.StartPostgres(t, testsupport.Options{Settings: map[string]string{"wal_level": "replica"}})
	db := pg.NewDatabase(t)
	pg.Exec(t, db, "CREATE TABLE public.t (id int PRIMARY KEY)")
	cfg := map[string]any{"address": pg.Addr(), "database": db, "user": "postgres", "password": "postgres",
		"advanced": map[string]any{"sslmode": "disable"}}
	bin := newConnectorBin(t)
	for _, command := range []string{"validate", "open"} {
		expectFailure(t, command, runCommand(t, bin, command, cfg),
			`logical replication is not enabled: wal_level is "replica"; run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL`,
			`or poll the tables instead: set each binding's "mode" to "Polling"`)
	}
}
