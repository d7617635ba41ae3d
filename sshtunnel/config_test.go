package sshtunnel_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"pgcapture/sshtunnel"
	"pgcapture/testsupport"
)

// TestOpenRejectsBadConfig checks the errors for configuration that Open
// refuses before connecting, and that none of them quotes key material.
func TestOpenRejectsBadConfig(t *testing.T) {
	goodKey, _ := testsupport.GenerateKey(t, "ed25519-openssh")
	_, otherPublic := testsupport.GenerateKey(t, "ed25519-openssh")
	secret := pemBody(t, goodKey)

	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	encrypted, err := ssh.MarshalPrivateKeyWithPassphrase(private, "", []byte("passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	// Deprecated, but old keys are encrypted this way and must be recognized.
	legacy, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", []byte(secret), []byte("passphrase"), x509.PEMCipherAES256) //nolint:staticcheck // see above
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		change  func(*sshtunnel.Config)
		problem string
	}{
		{"bad endpoint", func(c *sshtunnel.Config) { c.Endpoint = "bastion:22" }, "networkTunnel.sshForwarding.sshEndpoint"},
		{"empty key", func(c *sshtunnel.Config) { c.PrivateKey = " \n" }, `privateKey" is required`},
		{"not PEM", func(c *sshtunnel.Config) { c.PrivateKey = "hello" }, "no BEGIN line was found"},
		{"public key", func(c *sshtunnel.Config) { c.PrivateKey = otherPublic }, "looks like a public key"},
		{"escaped newlines", func(c *sshtunnel.Config) { c.PrivateKey = strings.ReplaceAll(goodKey, "\n", `\n`) }, `literal \n`},
		{"flattened", func(c *sshtunnel.Config) { c.PrivateKey = strings.ReplaceAll(goodKey, "\n", " ") }, "BEGIN and END lines or line breaks are damaged"},
		{"PuTTY key", func(c *sshtunnel.Config) { c.PrivateKey = "PuTTY-User-Key-File-3: ssh-ed25519\n" }, "PuTTYgen"},
		{"OpenSSH passphrase", func(c *sshtunnel.Config) { c.PrivateKey = string(pem.EncodeToMemory(encrypted)) }, "protected by a passphrase"},
		{"legacy PEM passphrase", func(c *sshtunnel.Config) { c.PrivateKey = string(pem.EncodeToMemory(legacy)) }, "protected by a passphrase"},
		{"encrypted PKCS#8", func(c *sshtunnel.Config) {
			c.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte(secret)}))
		}, "protected by a passphrase"},
		{"corrupt body", func(c *sshtunnel.Config) {
			c.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte(secret)}))
		}, `its "RSA PRIVATE KEY" block cannot be parsed`},
		{"unknown block", func(c *sshtunnel.Config) {
			c.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte(secret)}))
		}, `"BEGIN OPENSSH PRIVATE KEY"`},
		{"DSA key", func(c *sshtunnel.Config) { c.PrivateKey = dsaKey(t) }, "DSA key"},
		{"bad host key", func(c *sshtunnel.Config) { c.HostKey = "not a key" }, `hostKey" is not a public key`},
		{"negative keepalive", func(c *sshtunnel.Config) { c.KeepaliveInterval = -time.Second }, "keepalive interval -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sshtunnel.Config{
				// Nothing listens on port 1, but no test gets as far as dialing.
				Endpoint:   "ssh://flow@127.0.0.1:1",
				PrivateKey: goodKey,
			}
			tt.change(&cfg)
			tunnel, err := sshtunnel.Open(context.Background(), cfg)
			if err == nil {
				tunnel.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "ssh tunnel: ") || !strings.Contains(msg, tt.problem) {
				t.Errorf("got error %q, want one starting with \"ssh tunnel: \" and containing %q", msg, tt.problem)
			}
			if strings.Contains(msg, "unreachable") {
				t.Errorf("Open dialed despite bad configuration: %v", err)
			}
			if strings.Contains(msg, secret[:20]) || strings.Contains(strings.ReplaceAll(msg, `\n`, ""), secret[:20]) {
				t.Errorf("the error quotes the private key: %q", msg)
			}
		})
	}
}

// pemBody returns the first line of a PEM block's base64 body.
func pemBody(t *testing.T, key string) string {
	t.Helper()
	lines := strings.Split(key, "\n")
	if len(lines) < 2 || len(lines[1]) < 20 {
		t.Fatalf("unexpected PEM layout: %d lines", len(lines))
	}
	return lines[1]
}

// dsaKey returns a syntactically valid "DSA PRIVATE KEY"; the numbers need not
// make a usable key, since it is refused after parsing.
func dsaKey(t *testing.T) string {
	t.Helper()
	der, err := asn1.Marshal(struct {
		Version       int
		P, Q, G, Y, X *big.Int
	}{0, big.NewInt(23), big.NewInt(11), big.NewInt(4), big.NewInt(8), big.NewInt(3)})
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "DSA PRIVATE KEY", Bytes: der}))
}
