package sshtunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"
	logrustest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/crypto/ssh"

	"pgcapture/sshtunnel"
	"pgcapture/testsupport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.StopShared()
	os.Exit(code)
}

// fixture is an sshd that accepts one Ed25519 key, and the shared PostgreSQL.
type fixture struct {
	sshd *testsupport.SSHD
	key  string
	pg   *testsupport.Postgres
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	key, authorized := testsupport.GenerateKey(t, "ed25519-openssh")
	return fixture{
		sshd: testsupport.StartSSHD(t, authorized),
		key:  key,
		pg:   testsupport.SharedPostgres(t),
	}
}

func (f fixture) config() sshtunnel.Config {
	logger, _ := logrustest.NewNullLogger()
	return sshtunnel.Config{Endpoint: f.sshd.Endpoint(), PrivateKey: f.key, Logger: logger}
}

// open opens a tunnel that is closed when the test ends.
func open(t testing.TB, cfg sshtunnel.Config) *sshtunnel.Tunnel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tunnel, err := sshtunnel.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("opening the tunnel: %v", err)
	}
	t.Cleanup(func() { tunnel.Close() })
	return tunnel
}

// connectPostgres connects to pg through tunnel. The host is resolved by the
// SSH server, as it would be for a database on the server's private network.
func connectPostgres(ctx context.Context, t testing.TB, pg *testsupport.Postgres, tunnel *sshtunnel.Tunnel) (*pgconn.PgConn, error) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(pg.SuperuserURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = tunnel.DialContext
	cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

// query runs sql and returns its rows as strings.
func query(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for _, result := range results {
		for _, row := range result.Rows {
			values := make([]string, len(row))
			for i, v := range row {
				values[i] = string(v)
			}
			rows = append(rows, values)
		}
	}
	return rows, nil
}

func selectOne(t testing.TB, pg *testsupport.Postgres, tunnel *sshtunnel.Tunnel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := connectPostgres(ctx, t, pg, tunnel)
	if err != nil {
		t.Fatalf("connecting to PostgreSQL through the tunnel: %v", err)
	}
	rows, err := query(ctx, conn, "SELECT 1")
	if err != nil || len(rows) != 1 || rows[0][0] != "1" {
		t.Fatalf("SELECT 1 through the tunnel: got %q, %v", rows, err)
	}
}

func TestKeyKinds(t *testing.T) {
	kinds := testsupport.SSHKeyKinds()
	keys := make(map[string]string)
	var authorized []string
	for _, kind := range kinds {
		private, public := testsupport.GenerateKey(t, kind)
		keys[kind] = private
		authorized = append(authorized, public)
	}
	sshd := testsupport.StartSSHD(t, authorized...)
	pg := testsupport.SharedPostgres(t)

	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			logger, _ := logrustest.NewNullLogger()
			tunnel := open(t, sshtunnel.Config{Endpoint: sshd.Endpoint(), PrivateKey: keys[kind], Logger: logger})
			selectOne(t, pg, tunnel)
		})
	}
}

func TestConcurrentConnections(t *testing.T) {
	f := newFixture(t)
	tunnel := open(t, f.config())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Each connection reads a result several times larger than an SSH
	// channel's window while the others do, so flow control is exercised.
	const connections = 8
	const size = 4 << 20
	pids := make([]string, connections)
	errs := make([]error, connections)
	var wg sync.WaitGroup
	for i := range connections {
		wg.Go(func() {
			conn, err := connectPostgres(ctx, t, f.pg, tunnel)
			if err != nil {
				errs[i] = fmt.Errorf("connecting: %w", err)
				return
			}
			rows, err := query(ctx, conn, fmt.Sprintf("SELECT pg_backend_pid(), repeat('x', %d)", size))
			switch {
			case err != nil:
				errs[i] = err
			case len(rows) != 1 || len(rows[0][1]) != size:
				errs[i] = fmt.Errorf("got %d rows, want one with a %d byte value", len(rows), size)
			default:
				pids[i] = rows[0][0]
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	for _, pid := range pids {
		if seen[pid] {
			t.Fatalf("backend pid %s served two connections: %v", pid, pids)
		}
		seen[pid] = true
	}
}

func TestWrongKey(t *testing.T) {
	f := newFixture(t)
	wrongKey, _ := testsupport.GenerateKey(t, "rsa-pem")
	cfg := f.config()
	cfg.PrivateKey = wrongKey

	tunnel, err := sshtunnel.Open(context.Background(), cfg)
	if err == nil {
		tunnel.Close()
		t.Fatal("Open succeeded with a key that is not in authorized_keys")
	}
	msg := err.Error()
	for _, want := range []string{"ssh tunnel: ", "refused authentication", `user "`, "authorized_keys", "SHA256:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, pemBody(t, wrongKey)[:20]) {
		t.Errorf("the error quotes the private key: %q", msg)
	}
}

func TestHostKeyPinning(t *testing.T) {
	f := newFixture(t)
	serverKey := parsePublicKey(t, f.sshd.HostKey())
	_, otherKeyLine := testsupport.GenerateKey(t, "ed25519-openssh")
	otherKey := parsePublicKey(t, otherKeyLine)

	tests := []struct {
		name, hostKey string
		wantErr       []string
	}{
		{name: "the server's key", hostKey: f.sshd.HostKey()},
		{name: "as ssh-keyscan prints it", hostKey: "[127.0.0.1]:22 " + f.sshd.HostKey() + "\n"},
		{name: "one of several", hostKey: otherKeyLine + "\n" + f.sshd.HostKey()},
		{name: "another key", hostKey: otherKeyLine, wantErr: []string{
			"ssh tunnel: host key mismatch",
			ssh.FingerprintSHA256(serverKey),
			ssh.FingerprintSHA256(otherKey),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, hook := logrustest.NewNullLogger()
			cfg := f.config()
			cfg.HostKey, cfg.Logger = tt.hostKey, logger
			tunnel, err := sshtunnel.Open(context.Background(), cfg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer tunnel.Close()
				selectOne(t, f.pg, tunnel)
			} else {
				if err == nil {
					tunnel.Close()
					t.Fatal("Open succeeded")
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
			}
			if len(hook.AllEntries()) != 0 {
				t.Errorf("logged %q with a pinned host key", hook.LastEntry().Message)
			}
		})
	}

	t.Run("unpinned", func(t *testing.T) {
		logger, hook := logrustest.NewNullLogger()
		cfg := f.config()
		cfg.Logger = logger
		open(t, cfg).Close()

		entries := hook.AllEntries()
		if len(entries) != 1 || entries[0].Level != logrus.WarnLevel {
			t.Fatalf("got log entries %v, want one warning", entries)
		}
		logged, _ := entries[0].Data["hostKey"].(string)
		fingerprint, _ := entries[0].Data["hostKeyFingerprint"].(string)
		if key := parsePublicKey(t, logged); ssh.FingerprintSHA256(key) != fingerprint {
			t.Fatalf("the logged fingerprint %q is not that of the logged key %q", fingerprint, logged)
		}
		if !strings.Contains(entries[0].Message, "pin") {
			t.Errorf("the warning %q does not say how to pin the key", entries[0].Message)
		}

		// Following the warning's advice works.
		cfg.HostKey = logged
		open(t, cfg).Close()
		if len(hook.AllEntries()) != 1 {
			t.Errorf("warned again with the logged key pinned")
		}
	})
}

func parsePublicKey(t *testing.T, line string) ssh.PublicKey {
	t.Helper()
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("parsing public key %q: %v", line, err)
	}
	return key
}

func TestUnreachableEndpoint(t *testing.T) {
	key, _ := testsupport.GenerateKey(t, "ed25519-openssh")

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close() //nolint:errcheck // only its free port is wanted; nothing listens there now

	// A server that accepts connections but never speaks, like a firewall
	// that swallows packets after the handshake.
	silent := testsupport.ServeTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) }) //nolint:errcheck // a test server; the client ends the connection

	tests := []struct {
		name, addr string
		want       string
	}{
		{"nothing listening", closedAddr, "is unreachable"},
		{"silent server", silent, "context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			tunnel, err := sshtunnel.Open(ctx, sshtunnel.Config{Endpoint: "ssh://flow@" + tt.addr, PrivateKey: key})
			if err == nil {
				tunnel.Close()
				t.Fatal("Open succeeded")
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("Open took %s despite a 500ms context", elapsed)
			}
			if !strings.HasPrefix(err.Error(), "ssh tunnel: ") || !strings.Contains(err.Error(), tt.addr) ||
				!strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want one naming %s and containing %q", err, tt.addr, tt.want)
			}
		})
	}
}

// waitDone waits for the tunnel to end and returns why.
func waitDone(t *testing.T, tunnel *sshtunnel.Tunnel, within time.Duration) error {
	t.Helper()
	select {
	case <-tunnel.Done():
	case <-time.After(within):
		t.Fatalf("the tunnel is still up after %s", within)
	}
	err := tunnel.Err()
	if err == nil {
		t.Fatal("Done is closed but Err is nil")
	}
	return err
}

// checkDead checks that a dead tunnel fails both new and open connections
// promptly.
func checkDead(t *testing.T, tunnel *sshtunnel.Tunnel, openConn *pgconn.PgConn) {
	t.Helper()
	cause := tunnel.Err()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := time.Now()
	if conn, err := tunnel.DialContext(ctx, "tcp", "127.0.0.1:5432"); err == nil {
		conn.Close() //nolint:errcheck // the test fails anyway
		t.Error("DialContext succeeded through a dead tunnel")
	} else if !errors.Is(err, cause) || strings.Count(err.Error(), "ssh tunnel: ") != 1 {
		t.Errorf("DialContext error %q does not wrap the tunnel's %q once", err, cause)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("DialContext took %s to fail", elapsed)
	}

	start = time.Now()
	if _, err := query(ctx, openConn, "SELECT 1"); err == nil {
		t.Error("a query on a connection through a dead tunnel succeeded")
	} else if ctx.Err() != nil {
		t.Errorf("a query on a connection through a dead tunnel hung until its context ended: %v", err)
	} else if !errors.Is(err, cause) || !strings.Contains(err.Error(), "the tunnel is down") {
		// Not the io.EOF of a server that closed the connection.
		t.Errorf("a query through a dead tunnel failed with %q, which does not blame the tunnel's %q", err, cause)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("a query through a dead tunnel took %s to fail", elapsed)
	}
}

func TestServerStopped(t *testing.T) {
	f := newFixture(t)
	tunnel := open(t, f.config())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := connectPostgres(ctx, t, f.pg, tunnel)
	if err != nil {
		t.Fatal(err)
	}

	f.sshd.Stop()
	if err := waitDone(t, tunnel, 10*time.Second); !strings.Contains(err.Error(), "lost") {
		t.Errorf("Err() = %q, want it to say the connection was lost", err)
	}
	checkDead(t, tunnel, conn)
}

func TestKeepaliveDetectsSilentServer(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.KeepaliveInterval = 200 * time.Millisecond
	tunnel := open(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := connectPostgres(ctx, t, f.pg, tunnel)
	if err != nil {
		t.Fatal(err)
	}

	// A live server keeps the tunnel up across several keepalives.
	select {
	case <-tunnel.Done():
		t.Fatalf("the tunnel ended while the server was answering: %v", tunnel.Err())
	case <-time.After(4 * cfg.KeepaliveInterval):
	}

	f.sshd.Suspend()
	if err := waitDone(t, tunnel, 10*time.Second); !strings.Contains(err.Error(), "did not answer a keepalive within 200ms") {
		t.Errorf("Err() = %q, want it to blame the keepalive", err)
	}
	checkDead(t, tunnel, conn)
}

func TestClose(t *testing.T) {
	f := newFixture(t)
	tunnel := open(t, f.config())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := connectPostgres(ctx, t, f.pg, tunnel)
	if err != nil {
		t.Fatal(err)
	}
	if tunnel.Err() != nil {
		t.Fatalf("Err() = %v on an open tunnel", tunnel.Err())
	}

	if err := tunnel.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := waitDone(t, tunnel, time.Second); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Err() = %v after Close, want net.ErrClosed", err)
	}
	checkDead(t, tunnel, conn)
	if err := tunnel.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestContextCancellation checks that pgconn can interrupt a query through
// the tunnel: it does so by setting a deadline on the connection.
func TestContextCancellation(t *testing.T) {
	f := newFixture(t)
	tunnel := open(t, f.config())
	conn, err := connectPostgres(context.Background(), t, f.pg, tunnel)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = query(ctx, conn, "SELECT pg_sleep(10)")
	if err == nil || !pgconn.Timeout(err) {
		t.Errorf("got %v, want a timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("the query ran %s despite a 200ms context", elapsed)
	}
}

func TestDial(t *testing.T) {
	f := newFixture(t)
	tunnel := open(t, f.config())
	echo := startEcho(t)

	t.Run("deadlines", func(t *testing.T) {
		conn, err := tunnel.DialContext(context.Background(), "tcp", echo)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if got := conn.RemoteAddr().String(); got != echo {
			t.Errorf("RemoteAddr() = %q, want %q", got, echo)
		}

		if err := conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Fatalf("SetReadDeadline: %v", err)
		}
		_, err = conn.Read(make([]byte, 1))
		if netErr, ok := errors.AsType[net.Error](err); !ok || !netErr.Timeout() {
			t.Fatalf("Read past the deadline returned %v, want a timeout", err)
		}

		// The connection still works once the deadline is lifted.
		if err := conn.SetDeadline(time.Time{}); err != nil {
			t.Fatalf("SetDeadline: %v", err)
		}
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping" {
			t.Fatalf("echo after a timeout: got %q, %v", got, err)
		}
	})

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close() //nolint:errcheck // only its free port is wanted; nothing listens there now

	failures := []struct {
		name, network, addr, want string
	}{
		{"nothing listening", "tcp", closedAddr, "the SSH server could not connect to " + closedAddr},
		{"unix socket", "unix", "/tmp/.s.PGSQL.5432", `network "unix" is not supported`},
		{"no port", "tcp", "127.0.0.1", "missing port"},
		{"bad port", "tcp", "127.0.0.1:postgres", "port is not a number"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tunnel.DialContext(context.Background(), tt.network, tt.addr)
			if err == nil {
				conn.Close() //nolint:errcheck // the test fails anyway
				t.Fatal("DialContext succeeded")
			}
			if !strings.HasPrefix(err.Error(), "ssh tunnel: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want one containing %q", err, tt.want)
			}
		})
	}
	if tunnel.Err() != nil {
		t.Errorf("failed dials ended the tunnel: %v", tunnel.Err())
	}
}

// startEcho runs a TCP echo server and returns its address.
func startEcho(t testing.TB) string {
	t.Helper()
	return testsupport.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) }) //nolint:errcheck // a test server; the client ends the connection
}

// BenchmarkConn measures round trips through a tunneled connection, the path
// every protocol message takes.
func BenchmarkConn(b *testing.B) {
	key, authorized := testsupport.GenerateKey(b, "ed25519-openssh")
	sshd := testsupport.StartSSHD(b, authorized)
	logger, _ := logrustest.NewNullLogger()
	tunnel := open(b, sshtunnel.Config{Endpoint: sshd.Endpoint(), PrivateKey: key, Logger: logger})
	echo := startEcho(b)

	for _, size := range []int{64, 8 << 10} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			conn, err := tunnel.DialContext(context.Background(), "tcp", echo)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			out, in := make([]byte, size), make([]byte, size)
			b.SetBytes(int64(2 * size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Write(out); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
