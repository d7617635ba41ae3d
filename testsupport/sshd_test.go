package testsupport

import (
	"bytes"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestGenerateKey(t *testing.T) {
	tests := []struct {
		kind, pemType, keyType string
	}{
		{"rsa-pem", "RSA PRIVATE KEY", ssh.KeyAlgoRSA},
		{"rsa-pkcs8", "PRIVATE KEY", ssh.KeyAlgoRSA},
		{"rsa-openssh", "OPENSSH PRIVATE KEY", ssh.KeyAlgoRSA},
		{"ed25519-openssh", "OPENSSH PRIVATE KEY", ssh.KeyAlgoED25519},
		{"ed25519-pkcs8", "PRIVATE KEY", ssh.KeyAlgoED25519},
		{"ecdsa-pem", "EC PRIVATE KEY", ssh.KeyAlgoECDSA256},
		{"ecdsa-pkcs8", "PRIVATE KEY", ssh.KeyAlgoECDSA256},
		{"ecdsa-openssh", "OPENSSH PRIVATE KEY", ssh.KeyAlgoECDSA256},
	}
	if len(tests) != len(SSHKeyKinds()) {
		t.Fatalf("the test covers %d kinds, SSHKeyKinds lists %d", len(tests), len(SSHKeyKinds()))
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			privatePEM, authorized := GenerateKey(t, tt.kind)
			block, _ := pem.Decode([]byte(privatePEM))
			if block == nil || block.Type != tt.pemType {
				t.Fatalf("got PEM block %v, want type %q", block, tt.pemType)
			}
			signer, err := ssh.ParsePrivateKey([]byte(privatePEM))
			if err != nil {
				t.Fatalf("parsing the private key: %v", err)
			}
			public, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorized))
			if err != nil {
				t.Fatalf("parsing the authorized key %q: %v", authorized, err)
			}
			if public.Type() != tt.keyType {
				t.Errorf("got key type %q, want %q", public.Type(), tt.keyType)
			}
			if !bytes.Equal(public.Marshal(), signer.PublicKey().Marshal()) {
				t.Error("the authorized key is not the private key's public key")
			}
		})
	}
}

// TestSSHD checks each SSH server StartSSHD may run: OpenSSH where it is
// installed, and always gosshd, which stands in for it elsewhere.
func TestSSHD(t *testing.T) {
	servers := []sshServer{goSSHD}
	if installedSSHServer() == openSSH {
		servers = append(servers, openSSH)
	}
	for _, server := range servers {
		t.Run(string(server), func(t *testing.T) { testSSHServer(t, server) })
	}
}

func testSSHServer(t *testing.T, server sshServer) {
	privatePEM, authorized := GenerateKey(t, "ed25519-openssh")
	s := startSSHDFor(t, server, []string{authorized})

	user, addr := splitSSHEndpoint(t, s.Endpoint())
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.HostKey()))
	if err != nil {
		t.Fatalf("parsing HostKey %q: %v", s.HostKey(), err)
	}
	signer, err := ssh.ParsePrivateKey([]byte(privatePEM))
	if err != nil {
		t.Fatal(err)
	}
	config := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   ssh.FixedHostKey(hostKey),
		HostKeyAlgorithms: []string{hostKey.Type()},
		Timeout:           10 * time.Second,
	}

	t.Run("refuses an unknown key", func(t *testing.T) {
		otherPEM, _ := GenerateKey(t, "ed25519-openssh")
		other, err := ssh.ParsePrivateKey([]byte(otherPEM))
		if err != nil {
			t.Fatal(err)
		}
		refused := *config
		refused.Auth = []ssh.AuthMethod{ssh.PublicKeys(other)}
		if client, err := ssh.Dial("tcp", addr, &refused); err == nil {
			client.Close() //nolint:errcheck // the test fails anyway
			t.Fatal("sshd accepted a key that is not in authorized_keys")
		}
	})

	t.Run("refuses another user", func(t *testing.T) {
		refused := *config
		refused.User = "pgcapture-nobody"
		if client, err := ssh.Dial("tcp", addr, &refused); err == nil {
			client.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
			t.Fatal("the server let in a user other than " + user)
		}
	})

	t.Run("offers the RSA host key too", func(t *testing.T) {
		var offered ssh.PublicKey
		rsa := *config
		rsa.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA256}
		rsa.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
			offered = key
			return nil
		}
		client, err := ssh.Dial("tcp", addr, &rsa)
		if err != nil {
			t.Fatalf("logging in asking for an RSA host key: %v", err)
		}
		client.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
		if offered == nil || offered.Type() != ssh.KeyAlgoRSA {
			t.Errorf("the server offered %v, want an RSA key", offered)
		}
	})

	client, err := ssh.Dial("tcp", addr, config)
	if err != nil {
		t.Fatalf("logging in to %s: %v", s.Endpoint(), err)
	}
	defer client.Close()

	t.Run("forwards TCP", func(t *testing.T) {
		echo := startSSHEcho(t)
		conn, err := client.Dial("tcp", echo)
		if err != nil {
			t.Fatalf("opening a direct-tcpip channel to %s: %v", echo, err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5)
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping\n" {
			t.Fatalf("echo through the tunnel: got %q, %v", got, err)
		}
	})

	t.Run("reports a forward to a closed port as a failed connection", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := l.Addr().String()
		l.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
		conn, err := client.Dial("tcp", closed)
		if err == nil {
			conn.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
			t.Fatalf("a direct-tcpip channel to %s, where nothing listens, was opened", closed)
		}
		if openErr, ok := errors.AsType[*ssh.OpenChannelError](err); !ok || openErr.Reason != ssh.ConnectionFailed {
			t.Errorf("got %v, want an open channel error with reason %v", err, ssh.ConnectionFailed)
		}
	})

	t.Run("passes on half-closes", func(t *testing.T) {
		// A server that reads until EOF, then answers.
		addr := ServeTCP(t, func(c net.Conn) {
			data, _ := io.ReadAll(c)
			c.Write(append([]byte("got "), data...)) //nolint:errcheck // a test peer; the reader checks what arrived
		})
		conn, err := client.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte("request")) //nolint:errcheck // a test peer; the reader checks what arrived
		if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(conn); err != nil || string(got) != "got request" {
			t.Errorf("after a half-close: got %q, %v", got, err)
		}
	})

	t.Run("Suspend silences the server", func(t *testing.T) {
		s.Suspend()
		replied := make(chan struct{})
		go func() {
			client.SendRequest("keepalive@openssh.com", true, nil) //nolint:errcheck // only whether it answers matters
			close(replied)
		}()
		// Proving silence takes waiting; a live sshd answers in microseconds.
		select {
		case <-replied:
			t.Fatal("a suspended sshd answered a request")
		case <-time.After(300 * time.Millisecond):
		}
	})

	t.Run("Stop drops connections", func(t *testing.T) {
		s.Stop()
		dropped := make(chan error, 1)
		go func() { dropped <- client.Wait() }()
		select {
		case <-dropped: //nolint:errcheck // the connection dropping is the point; its error says so
		case <-time.After(10 * time.Second):
			t.Fatal("the SSH connection survived Stop")
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close() //nolint:errcheck // the test fails anyway
			t.Fatal("sshd still accepts connections after Stop")
		}
		s.Stop() // a second Stop is harmless
	})
}

// splitSSHEndpoint splits "ssh://user@host:port".
func splitSSHEndpoint(t *testing.T, endpoint string) (user, addr string) {
	t.Helper()
	user, addr, ok := strings.Cut(strings.TrimPrefix(endpoint, "ssh://"), "@")
	if !ok || !strings.HasPrefix(endpoint, "ssh://") {
		t.Fatalf("Endpoint() = %q, want ssh://user@host:port", endpoint)
	}
	return user, addr
}

// startSSHEcho runs a TCP echo server and returns its address.
func startSSHEcho(t *testing.T) string {
	t.Helper()
	return ServeTCP(t, func(c net.Conn) { io.Copy(c, c) }) //nolint:errcheck // a test server; the client ends the connection
}
