package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"pgcapture/protocol"
	"pgcapture/testsupport"
)

// tunnelConfig returns f's configuration reaching the database through
// sshd, as a bastion host would: the address is resolved on its side.
func tunnelConfig(f *fixture, sshd *testsupport.SSHD, key, hostKey string) map[string]any {
	cfg := f.config()
	cfg["networkTunnel"] = map[string]any{"sshForwarding": map[string]any{
		"sshEndpoint": sshd.Endpoint(), "privateKey": key, "hostKey": hostKey,
	}}
	return cfg
}

func TestSSHTunnel(t *testing.T) {
	f := newFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, 5) g")
	kinds := []string{"rsa-pem", "rsa-pkcs8", "ed25519-openssh", "ed25519-pkcs8"}
	keys := map[string]string{}
	var authorized []string
	for _, kind := range kinds {
		private, public := testsupport.GenerateKey(t, kind)
		keys[kind] = private
		authorized = append(authorized, public)
	}
	sshd := testsupport.StartSSHD(t, authorized...)
	bin := newConnectorBin(t, "LOG_FORMAT=json")

	for _, kind := range kinds {
		t.Run("discover with "+kind, func(t *testing.T) {
			r := bin.request(t, discoverRequest(tunnelConfig(f, sshd, keys[kind], "")))
			if r.err != nil {
				t.Fatalf("discover: %v\n%s", r.err, r.stderr)
			}
			if !strings.Contains(r.stdout, `"recommendedName":"public/t"`) {
				t.Errorf("discover through the tunnel did not find public.t: %s", r.stdout)
			}
			// An unpinned host key is accepted, with its fingerprint logged.
			if !strings.Contains(r.stderr, "hostKeyFingerprint") || !strings.Contains(r.stderr, "networkTunnel.sshForwarding.hostKey") {
				t.Errorf("the unpinned host key's fingerprint was not logged with how to pin it:\n%s", r.stderr)
			}
		})
	}

	t.Run("wrong key", func(t *testing.T) {
		stranger, _ := testsupport.GenerateKey(t, "ed25519-openssh")
		r := bin.request(t, discoverRequest(tunnelConfig(f, sshd, stranger, "")))
		expectFailure(t, "discover", r, "ssh tunnel: SSH server", `refused authentication for user "root"`, "networkTunnel.sshForwarding.privateKey")
	})

	t.Run("wrong host key", func(t *testing.T) {
		_, pinned := testsupport.GenerateKey(t, "ed25519-openssh")
		r := bin.request(t, discoverRequest(tunnelConfig(f, sshd, keys["rsa-pem"], pinned)))
		expectFailure(t, "discover", r, "ssh tunnel: host key mismatch",
			fingerprint(t, sshd.HostKey()), fingerprint(t, pinned), "networkTunnel.sshForwarding.hostKey")
	})

	// A capture through the tunnel, with the host key pinned. It gives up
	// reconnecting after a short retry timeout.
	f.advanced["retry_timeout"] = "2s"
	cfg := tunnelConfig(f, sshd, keys["ed25519-openssh"], sshd.HostKey())
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(cfg, bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), protocol.StateKey([]string{"public", "t"}, 0)) == "Active"
	})
	f.exec(t, "INSERT INTO public.t VALUES (6, 'six')")
	s.WaitFor(t, 30*time.Second, "the insert, replicated", func(s *testsupport.Session) bool { return len(s.Docs()) == 6 })
	if strings.Contains(s.Stderr(), "is not pinned") {
		t.Errorf("a pinned host key was reported as not pinned")
	}

	// Every connection of the capture, the replication connection included,
	// reaches the server from sshd. (A server in a container sees its
	// connections through a proxy, with other port numbers.)
	if f.pg.DataDir() != "" {
		checkConnectionsFromSSHD(t, f)
	}

	// When the tunnel dies for good, the capture fails once its reconnection
	// attempts run out, saying why.
	sshd.Stop()
	waitUntil(t, 15*time.Second, "the connector to exit", func() bool {
		exited, _ := s.Exited()
		return exited
	})
	if _, err := s.Exited(); err == nil {
		t.Errorf("the connector exited 0 when its tunnel died")
	}
	if msg := lastMessage(s.Stderr()); !strings.Contains(msg, "gave up reconnecting") || !strings.Contains(msg, "ssh tunnel: SSH server") || !strings.Contains(msg, "is unreachable") {
		t.Errorf("the last stderr line does not blame the tunnel: %s", msg)
	}
	if strings.Contains(s.Stderr(), "panic") {
		t.Errorf("the connector panicked:\n%s", s.Stderr())
	}
}

// checkConnectionsFromSSHD checks that the sessions of the connector all
// come from sshd.
func checkConnectionsFromSSHD(t *testing.T, f *fixture) {
	t.Helper()
	rows, err := f.conn.Query(context.Background(),
		`SELECT backend_type, client_port FROM pg_stat_activity WHERE application_name = 'source-postgres' AND datname = $1`, f.db)
	if err != nil {
		t.Fatal(err)
	}
	var kindsSeen []string
	for rows.Next() {
		var kind string
		var port int
		if err := rows.Scan(&kind, &port); err != nil {
			t.Fatal(err)
		}
		kindsSeen = append(kindsSeen, kind)
		if owner := socketOwner(t, port); owner != "sshd" {
			t.Errorf("the %s connection from port %d is held by %q, not sshd", kind, port, owner)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(kindsSeen) != 2 {
		t.Errorf("the capture has connections %v, want a client backend and a walsender", kindsSeen)
	}
}

func fingerprint(t *testing.T, authorizedKey string) string {
	t.Helper()
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(key)
}

// socketOwner returns the command name of the process holding the TCP
// socket whose local end is 127.0.0.1:port, or "" if there is none.
func socketOwner(t *testing.T, port int) string {
	t.Helper()
	table, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	var inode string
	for line := range strings.Lines(string(table)) {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if fields := strings.Fields(line); len(fields) > 9 && fields[1] == local {
			inode = fields[9]
		}
	}
	if inode == "" {
		return ""
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, _ := os.Readlink(fd); target == "socket:["+inode+"]" {
			comm, _ := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(fd)), "comm"))
			return strings.TrimSpace(string(comm))
		}
	}
	return ""
}
