package main

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// secretParts returns what of a secret must never be output: the secret
// itself and, for a PEM key, each line of its body.
func secretParts(secret string) []string {
	parts := []string{strings.TrimSpace(secret)}
	for line := range strings.Lines(secret) {
		if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			parts = append(parts, line)
		}
	}
	return parts
}

// TestSecretsStayOutOfOutput runs the binary with every log message enabled
// and a recognisable password and private key, on success and on failure,
// and looks for them in everything it writes.
func TestSecretsStayOutOfOutput(t *testing.T) {
	f := newFixture(t)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t VALUES (1, 'one')")
	password := "Pw-XYZZY-do-not-log-" + f.slot
	user := f.slot + "_secretive"
	f.exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'", user, password))
	t.Cleanup(func() {
		f.pg.Exec(t, f.db, "DROP OWNED BY "+user)
		f.pg.Exec(t, "postgres", "DROP ROLE "+user)
	})
	key, authorized := testsupport.GenerateKey(t, "rsa-pem")
	sshd := testsupport.StartSSHD(t, authorized)
	cfg := tunnelConfig(f, sshd, key, "")
	cfg["user"], cfg["password"] = user, password

	trace := []string{"LOG_LEVEL=trace", "LOG_FORMAT=json"}
	bin := newConnectorBin(t, trace...)
	secrets := append(secretParts(password), secretParts(key)...)
	leaks := func(what string, outputs ...string) {
		t.Helper()
		for _, out := range outputs {
			for _, secret := range secrets {
				if strings.Contains(out, secret) {
					t.Errorf("%s: the output contains the secret %q:\n%s", what, secret, out)
				}
			}
		}
	}

	for name, req := range map[string]any{
		"discover": discoverRequest(cfg),
		"validate": validateRequest(cfg, "public.t"),
	} {
		r := bin.request(t, req)
		if r.err != nil {
			t.Fatalf("%s: %v\n%s", name, r.err, r.stderr)
		}
		if !strings.Contains(r.stderr, `"level":"trace"`) && !strings.Contains(r.stderr, `"level":"debug"`) {
			t.Errorf("%s: no debug or trace messages were logged, so this test proves little:\n%s", name, r.stderr)
		}
		leaks(name, r.stdout, r.stderr)
	}

	connector := &testsupport.Connector{Path: bin.path, Env: trace}
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	s := connector.Open(t, testsupport.OpenRequest(cfg, bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool { return len(s.Docs()) == 1 })
	f.exec(t, "INSERT INTO public.t VALUES (2, 'two')")
	s.WaitFor(t, 30*time.Second, "the insert", func(s *testsupport.Session) bool { return len(s.Docs()) == 2 })
	if err := s.Stop(t); err != nil {
		t.Errorf("stopping the capture: %v", err)
	}
	leaks("open", s.Stderr(), string(s.State()))

	// Failures, some of them about the secrets themselves.
	strangerKey, _ := testsupport.GenerateKey(t, "ed25519-openssh")
	wrongPassword := password + "-wrong"
	secrets = append(secrets, append(secretParts(strangerKey), wrongPassword, "XYZZY-key-material", "XYZZY-tls-key")...)
	for name, change := range map[string]func(cfg map[string]any){
		"wrong password": func(cfg map[string]any) { cfg["password"] = wrongPassword },
		"wrong SSH key": func(cfg map[string]any) {
			cfg["networkTunnel"] = tunnelConfig(f, sshd, strangerKey, "")["networkTunnel"]
		},
		"malformed SSH key": func(cfg map[string]any) {
			cfg["networkTunnel"] = tunnelConfig(f, sshd, "-----BEGIN OPENSSH PRIVATE KEY-----\nXYZZY-key-material\n-----END OPENSSH PRIVATE KEY-----\n", "")["networkTunnel"]
		},
		"password of the wrong type": func(cfg map[string]any) { cfg["password"] = []string{password} },
		"address as a URL": func(cfg map[string]any) {
			cfg["address"] = "postgres://" + user + ":" + password + "@127.0.0.1:5432/db"
		},
		"malformed TLS key": func(cfg map[string]any) {
			cfg["advanced"] = map[string]any{"sslmode": "require", "ssl_cert": "x", "ssl_key": "-----BEGIN PRIVATE KEY-----\nXYZZY-tls-key\n-----END PRIVATE KEY-----\n"}
		},
	} {
		bad := maps.Clone(cfg)
		change(bad)
		for _, command := range []string{"discover", "open"} {
			r := runCommand(t, bin, command, bad)
			expectFailure(t, name+": "+command, r)
			leaks(name+": "+command, r.stdout, r.stderr)
		}
	}
}
