package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"pgcapture/testsupport"
)

func TestConnConfigSettings(t *testing.T) {
	// The process environment must not change where or how we connect.
	t.Setenv("PGHOST", "elsewhere.example.com")
	t.Setenv("PGSSLMODE", "verify-full")
	t.Setenv("PGPASSWORD", "from-environment")
	t.Setenv("PGAPPNAME", "from-environment")
	t.Setenv("PGOPTIONS", "-c statement_timeout=1")
	t.Setenv("PGTARGETSESSIONATTRS", "standby")

	e := &Endpoint{
		Address:  "db.example.com:6543",
		Database: `shop 'main' \ db`,
		User:     `o'brien\`,
		Password: "hunter2",
		Advanced: Advanced{SSLMode: "disable"},
	}
	params := map[string]string{"replication": "database"}
	cfg, err := e.ConnConfig(params, nil)
	if err != nil {
		t.Fatalf("ConnConfig: %v", err)
	}

	if cfg.Host != "db.example.com" || cfg.Port != 6543 || cfg.Database != e.Database || cfg.User != e.User || cfg.Password != e.Password {
		t.Errorf("ConnConfig = host %q port %d database %q user %q password %q, want the endpoint's",
			cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password)
	}
	if cfg.TLSConfig != nil || len(cfg.Fallbacks) != 0 {
		t.Errorf("sslmode disable: TLSConfig = %v with %d fallbacks, want none", cfg.TLSConfig, len(cfg.Fallbacks))
	}
	if cfg.ConnectTimeout != ConnectTimeout {
		t.Errorf("ConnectTimeout = %v, want %v", cfg.ConnectTimeout, ConnectTimeout)
	}
	if cfg.ValidateConnect != nil {
		t.Error("ValidateConnect is set, want nil (target_session_attrs=any)")
	}
	want := map[string]string{"application_name": ApplicationName, "replication": "database"}
	if !mapsEqual(cfg.RuntimeParams, want) {
		t.Errorf("RuntimeParams = %v, want %v", cfg.RuntimeParams, want)
	}

	// The caller may override application_name, and its map is not modified.
	params["application_name"] = "backfill"
	cfg, err = e.ConnConfig(params, nil)
	if err != nil {
		t.Fatalf("ConnConfig: %v", err)
	}
	if cfg.RuntimeParams["application_name"] != "backfill" {
		t.Errorf("application_name = %q, want the caller's", cfg.RuntimeParams["application_name"])
	}
	cfg.RuntimeParams["x"] = "y"
	if _, ok := params["x"]; ok {
		t.Error("ConnConfig shares the caller's runtime parameter map")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

// TestConnConfigTLSAttempts checks the order of TLS and plain attempts that
// allow and prefer make; the server tests cover what each mode verifies.
func TestConnConfigTLSAttempts(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want []bool // whether each attempt uses TLS
	}{
		{"disable", []bool{false}},
		{"allow", []bool{false, true}},
		{"prefer", []bool{true, false}},
		{"", []bool{true, false}},
		{"require", []bool{true}},
		{"verify-ca", []bool{true}},
		{"verify-full", []bool{true}},
	} {
		e := &Endpoint{Address: "db.example.com", Database: "d", User: "u", Advanced: Advanced{SSLMode: tc.mode}}
		cfg, err := e.ConnConfig(nil, nil)
		if err != nil {
			t.Fatalf("sslmode %q: ConnConfig: %v", tc.mode, err)
		}
		got := []bool{cfg.TLSConfig != nil}
		for _, f := range cfg.Fallbacks {
			got = append(got, f.TLSConfig != nil)
			if f.Host != cfg.Host || f.Port != cfg.Port {
				t.Errorf("sslmode %q: fallback to %s:%d, want %s:%d", tc.mode, f.Host, f.Port, cfg.Host, cfg.Port)
			}
		}
		if !equalBools(got, tc.want) {
			t.Errorf("sslmode %q: attempts use TLS %v, want %v", tc.mode, got, tc.want)
		}
		if cfg.TLSConfig != nil && cfg.TLSConfig.ServerName != "db.example.com" {
			t.Errorf("sslmode %q: ServerName = %q, want the host for SNI", tc.mode, cfg.TLSConfig.ServerName)
		}
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestConnConfigDialsThroughTunnel(t *testing.T) {
	var dialed string
	dial := func(_ context.Context, network, addr string) (net.Conn, error) {
		dialed = network + " " + addr
		return nil, errors.New("tunnel closed")
	}
	e := &Endpoint{Address: "db.internal:5433", Database: "d", User: "u", Advanced: Advanced{SSLMode: "disable"}}
	cfg, err := e.ConnConfig(nil, dial)
	if err != nil {
		t.Fatalf("ConnConfig: %v", err)
	}
	// The name must reach the tunnel unresolved: only the SSH server's
	// network may know it.
	if addrs, err := cfg.LookupFunc(t.Context(), "db.internal"); err != nil || len(addrs) != 1 || addrs[0] != "db.internal" {
		t.Errorf("LookupFunc(db.internal) = %q, %v, want the name unchanged", addrs, err)
	}
	if _, err := pgconn.ConnectConfig(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "tunnel closed") {
		t.Errorf("ConnectConfig error = %v, want the tunnel's error", err)
	}
	if dialed != "tcp db.internal:5433" {
		t.Errorf("dialed %q, want %q", dialed, "tcp db.internal:5433")
	}
}

func TestConnConfigBadAddress(t *testing.T) {
	_, err := (&Endpoint{Address: "db:99999"}).ConnConfig(nil, nil)
	if err == nil || !strings.Contains(err.Error(), `"address"`) {
		t.Errorf("ConnConfig error = %v, want one naming the address", err)
	}
}

// tlsServer is a PostgreSQL server that accepts TCP connections only over
// TLS, with a certificate for 127.0.0.1 and localhost issued by ca.
type tlsServer struct {
	*testsupport.Postgres
	ca *testCA
}

func startTLSServer(t *testing.T) *tlsServer {
	t.Helper()
	ca := newTestCA(t, "Test Server CA")
	serverCert, serverKey := ca.issue(t, "localhost", x509.ExtKeyUsageServerAuth, "127.0.0.1", "localhost")
	hba := strings.Join([]string{
		"local   all all                 trust",
		"hostssl all certuser 127.0.0.1/32 cert",
		"hostssl all all      127.0.0.1/32 scram-sha-256",
	}, "\n") + "\n"
	p := testsupport.StartPostgres(t, testsupport.Options{
		Settings: map[string]string{
			"ssl":           "on",
			"ssl_cert_file": "server.crt",
			"ssl_key_file":  "server.key",
			"ssl_ca_file":   "ca.crt",
		},
		Files: map[string][]byte{
			"server.crt":  []byte(serverCert),
			"server.key":  []byte(serverKey),
			"ca.crt":      []byte(ca.certPEM),
			"pg_hba.conf": []byte(hba),
		},
	})
	for _, sql := range []string{
		"CREATE ROLE certuser LOGIN",
		"CREATE ROLE capture LOGIN PASSWORD 'capture-password'",
		"CREATE DATABASE noconnect", // not in a transaction, so one at a time
		"REVOKE CONNECT ON DATABASE noconnect FROM PUBLIC",
	} {
		p.Exec(t, "postgres", sql)
	}
	return &tlsServer{Postgres: p, ca: ca}
}

// endpoint returns a configuration for the superuser at address, which is
// the server's own address if empty.
func (s *tlsServer) endpoint(address, sslmode, sslCA string) *Endpoint {
	if address == "" {
		address = s.Addr()
	}
	return &Endpoint{
		Address:  address,
		Database: "postgres",
		User:     "postgres",
		Password: "postgres",
		Advanced: Advanced{SSLMode: sslmode, SSLCA: sslCA},
	}
}

// connect connects as e says, through dial if not nil, and returns whether
// the connection uses TLS.
func connect(t *testing.T, e *Endpoint, dial DialFunc) (usesTLS bool, err error) {
	t.Helper()
	cfg, err := e.ConnConfig(nil, dial)
	if err != nil {
		t.Fatalf("ConnConfig: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, ExplainConnectError(err, e)
	}
	defer conn.Close(ctx)
	_, usesTLS = conn.Conn().(*tls.Conn)
	return usesTLS, nil
}

func TestConnectTLS(t *testing.T) {
	server := startTLSServer(t)
	wrongCA := newTestCA(t, "Wrong CA")
	localhost := net.JoinHostPort("localhost", strconv.Itoa(server.Port()))
	// misnamed reaches the server under a name its certificate does not list.
	misnamed := net.JoinHostPort("db.internal.example", strconv.Itoa(server.Port()))
	dialServer := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, server.Addr())
	}

	for _, tc := range []struct {
		name    string
		address string
		sslmode string
		ca      string
		dial    DialFunc
		errors  []string // nil when the connection must succeed over TLS
	}{
		{name: "verify-full by IP", sslmode: "verify-full", ca: server.ca.certPEM},
		{name: "verify-full by name", address: localhost, sslmode: "verify-full", ca: server.ca.certPEM},
		{name: "verify-full with wrong CA", sslmode: "verify-full", ca: wrongCA.certPEM,
			errors: []string{`is not signed by the CA in "advanced.ssl_ca"`}},
		{name: "verify-full without CA trusts only the system", sslmode: "verify-full",
			errors: []string{"is not signed by a trusted CA", `"advanced.ssl_ca"`}},
		{name: "verify-full with mismatched name", address: misnamed, sslmode: "verify-full", ca: server.ca.certPEM, dial: dialServer,
			errors: []string{`not valid for host "db.internal.example"`, "127.0.0.1", "localhost", `"verify-ca"`}},
		{name: "verify-ca ignores the name", address: misnamed, sslmode: "verify-ca", ca: server.ca.certPEM, dial: dialServer},
		{name: "verify-ca with wrong CA", sslmode: "verify-ca", ca: wrongCA.certPEM,
			errors: []string{`is not signed by the CA in "advanced.ssl_ca"`}},
		{name: "require without CA", sslmode: "require"},
		{name: "require verifies a given CA", sslmode: "require", ca: wrongCA.certPEM,
			errors: []string{`is not signed by the CA in "advanced.ssl_ca"`}},
		{name: "require with CA", address: misnamed, sslmode: "require", ca: server.ca.certPEM, dial: dialServer},
		{name: "prefer", sslmode: "prefer"},
		{name: "prefer ignores a wrong CA", sslmode: "prefer", ca: wrongCA.certPEM},
		{name: "allow falls back to TLS", sslmode: "allow"},
		{name: "disable against a TLS-only server", sslmode: "disable",
			errors: []string{"only over TLS", `"advanced.sslmode" is "disable"`, `"require"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			usesTLS, err := connect(t, server.endpoint(tc.address, tc.sslmode, tc.ca), tc.dial)
			if tc.errors == nil {
				if err != nil {
					t.Fatalf("connecting: %v", err)
				}
				if !usesTLS {
					t.Error("the connection does not use TLS")
				}
				return
			}
			if err == nil {
				t.Fatalf("connecting succeeded, want an error containing %q", tc.errors)
			}
			t.Log(err)
			for _, want := range tc.errors {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "password=") {
				t.Errorf("error %q quotes a password", err)
			}
		})
	}

	t.Run("client certificate", func(t *testing.T) {
		e := server.endpoint("", "verify-full", server.ca.certPEM)
		e.User, e.Password = "certuser", ""
		if _, err := connect(t, e, nil); err == nil || !strings.Contains(err.Error(), "requires a valid client certificate") {
			t.Errorf("connecting without a certificate: error %v, want one asking for a client certificate", err)
		}

		e.Advanced.SSLCert, e.Advanced.SSLKey = server.ca.issue(t, "certuser", x509.ExtKeyUsageClientAuth)
		if _, err := connect(t, e, nil); err != nil {
			t.Errorf("connecting with a certificate: %v", err)
		}
	})

	t.Run("explain server errors", func(t *testing.T) {
		for _, tc := range []struct {
			name              string
			database, user    string
			password          string
			wantCode, wantMsg string
		}{
			{"wrong password", "postgres", "capture", "not-the-password", "28P01",
				`password authentication failed for user "capture": check "user" and "password"`},
			{"missing database", "nosuchdb", "capture", "capture-password", "3D000",
				`database "nosuchdb" does not exist on the server at ` + server.Addr()},
			{"no CONNECT privilege", "noconnect", "capture", "capture-password", "42501",
				`user "capture" may not connect to database "noconnect" because it lacks the CONNECT privilege: run GRANT CONNECT ON DATABASE "noconnect" TO "capture"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := server.endpoint("", "require", "")
				e.Database, e.User, e.Password = tc.database, tc.user, tc.password
				_, err := connect(t, e, nil)
				if err == nil {
					t.Fatal("connecting succeeded, want an error")
				}
				t.Log(err)
				if !strings.HasPrefix(err.Error(), tc.wantMsg) {
					t.Errorf("error %q\ndoes not start with %q", err, tc.wantMsg)
				}
				if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != tc.wantCode {
					t.Errorf("the explained error does not wrap a PgError with code %s: %v", tc.wantCode, err)
				}
				if strings.Contains(err.Error(), tc.password) {
					t.Errorf("error %q contains the password", err)
				}
			})
		}
	})
}

func TestExplainUnreachable(t *testing.T) {
	closedPort := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() //nolint:errcheck // only its free port is wanted; nothing listens there now
		return addr
	}
	serve := func(t *testing.T, handle func(net.Conn)) string { return testsupport.ServeTCP(t, handle) }

	for _, tc := range []struct {
		name    string
		address func(t *testing.T) string
		sslmode string
		dial    DialFunc
		timeout time.Duration // of the caller's context
		want    []string
		wantIs  error
	}{
		{
			name:    "connection refused",
			address: closedPort,
			sslmode: "prefer",
			want:    []string{"nothing accepts connections at 127.0.0.1:", "connection refused", `check "address"`},
			wantIs:  syscall.ECONNREFUSED,
		},
		{
			name: "silent server",
			address: func(t *testing.T) string {
				return serve(t, func(c net.Conn) { io.Copy(io.Discard, c) }) //nolint:errcheck // a test server; the client ends the connection
			},
			sslmode: "disable",
			timeout: 300 * time.Millisecond,
			want:    []string{"did not respond", "firewalls"},
		},
		{
			name: "server without TLS",
			address: func(t *testing.T) string {
				// Answer the SSLRequest with 'N' as a server with ssl=off does.
				return serve(t, func(c net.Conn) {
					if _, err := io.ReadFull(c, make([]byte, 8)); err == nil {
						c.Write([]byte("N")) //nolint:errcheck // the client's error is what the test checks
					}
					io.Copy(io.Discard, c) //nolint:errcheck // a test server; the client ends the connection
				})
			},
			sslmode: "require",
			want:    []string{"does not support TLS", `"advanced.sslmode" is "require"`},
		},
		{
			name:    "unknown host",
			address: func(*testing.T) string { return "db.invalid:5432" },
			sslmode: "disable",
			dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, &net.DNSError{Err: "no such host", Name: "db.invalid", IsNotFound: true}
			},
			want: []string{`host "db.invalid" of "address" could not be resolved`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Endpoint{Address: tc.address(t), Database: "postgres", User: "flow_capture", Password: "hunter2",
				Advanced: Advanced{SSLMode: tc.sslmode}}
			cfg, err := e.ConnConfig(nil, tc.dial)
			if err != nil {
				t.Fatalf("ConnConfig: %v", err)
			}
			ctx := t.Context()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			_, err = pgconn.ConnectConfig(ctx, cfg)
			if err == nil {
				t.Fatal("connecting succeeded")
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("failing took %v, want it prompt", elapsed)
			}
			explained := ExplainConnectError(err, e)
			t.Log(explained)
			for _, want := range tc.want {
				if !strings.Contains(explained.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", explained, want)
				}
			}
			if !errors.Is(explained, err) {
				t.Error("the explained error does not wrap the original")
			}
			if tc.wantIs != nil && !errors.Is(explained, tc.wantIs) {
				t.Errorf("errors.Is(explained, %v) = false", tc.wantIs)
			}
			if strings.Contains(explained.Error(), "hunter2") {
				t.Errorf("error %q contains the password", explained)
			}
		})
	}
}

func TestExplainConnectErrorPassesThrough(t *testing.T) {
	e := &Endpoint{Address: "db"}
	if err := ExplainConnectError(nil, e); err != nil {
		t.Errorf("ExplainConnectError(nil) = %v, want nil", err)
	}
	other := errors.New("something else")
	if err := ExplainConnectError(other, e); err != other {
		t.Errorf("ExplainConnectError(%v) = %v, want it unchanged", other, err)
	}
}
