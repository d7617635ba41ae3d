package config

import (
	"context"
	"crypto/dsa" //nolint:staticcheck // DSA keys are made to test that they are refused
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"math/big"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"pgcapture/sshtunnel"
	"pgcapture/testsupport"
)

// TestSSHForwardingAgreesWithTunnel checks that configuration validation
// accepts exactly the private and host keys with which sshtunnel.Open
// connects to a real SSH server, and refuses the others with the tunnel's
// own message, which names the field and says how to fix it.
func TestSSHForwardingAgreesWithTunnel(t *testing.T) {
	const (
		privateKeyField = `"networkTunnel.sshForwarding.privateKey"`
		hostKeyField    = `"networkTunnel.sshForwarding.hostKey"`
	)
	keys := map[string]string{}
	var authorized []string
	for _, kind := range testsupport.SSHKeyKinds() {
		private, public := testsupport.GenerateKey(t, kind)
		keys[kind] = private
		authorized = append(authorized, public)
	}
	sshd := testsupport.StartSSHD(t, authorized...)
	good := keys["ed25519-openssh"]
	_, stranger := testsupport.GenerateKey(t, "ed25519-openssh")

	type keyCase struct {
		name                string
		privateKey, hostKey string
		// field and problem are what the refusal must contain; an empty
		// field means the key is accepted.
		field, problem string
	}
	var cases []keyCase
	for _, kind := range testsupport.SSHKeyKinds() {
		cases = append(cases, keyCase{name: kind, privateKey: keys[kind], hostKey: sshd.HostKey()})
	}
	cases = append(cases, []keyCase{
		{name: "surrounded by blank lines", privateKey: "\n  \n" + keys["rsa-pem"] + "\n\n", hostKey: sshd.HostKey()},
		{name: "no host key pinned", privateKey: good},
		{name: "host key in known_hosts form", privateKey: good, hostKey: "bastion.example.com " + sshd.HostKey() + "\n"},
		{name: "one of several host keys", privateKey: good, hostKey: stranger + "\n" + sshd.HostKey()},

		{name: "DSA", privateKey: dsaKey(t), hostKey: sshd.HostKey(),
			field: privateKeyField, problem: "is a DSA key, which current SSH servers refuse: generate an Ed25519 key"},
		{name: "blank", privateKey: " \n\t", field: privateKeyField, problem: "is required for an SSH tunnel"},
		{name: "garbage", privateKey: "hunter2-do-not-leak",
			field: privateKeyField, problem: "is not a valid SSH private key in PEM or OpenSSH format: no BEGIN line was found"},
		{name: "public key", privateKey: stranger, field: privateKeyField, problem: "looks like a public key"},
		{name: "escaped line breaks", privateKey: strings.ReplaceAll(good, "\n", `\n`), field: privateKeyField, problem: `literal \n`},
		{name: "corrupt body", privateKey: encodePEM("RSA PRIVATE KEY", []byte("hunter2-do-not-leak")),
			field: privateKeyField, problem: `its "RSA PRIVATE KEY" block cannot be parsed`},
		{name: "certificate", privateKey: encodePEM("CERTIFICATE", []byte("hunter2-do-not-leak")),
			field: privateKeyField, problem: `its "CERTIFICATE" block cannot be parsed`},
		{name: "OpenSSH with passphrase", privateKey: encryptedOpenSSHKey(t),
			field: privateKeyField, problem: `is protected by a passphrase, which is not supported: remove the passphrase with ssh-keygen -p`},
		{name: "legacy PEM with passphrase", privateKey: encryptedLegacyKey(t, keys["rsa-pem"]),
			field: privateKeyField, problem: "is protected by a passphrase"},
		{name: "encrypted PKCS#8", privateKey: encodePEM("ENCRYPTED PRIVATE KEY", []byte("hunter2-do-not-leak")),
			field: privateKeyField, problem: "is protected by a passphrase"},
		{name: "host key fingerprint", privateKey: good, hostKey: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
			field: hostKeyField, problem: "is not a public key as written in known_hosts or authorized_keys"},
		{name: "host key then garbage", privateKey: good, hostKey: sshd.HostKey() + "\nnot a key",
			field: hostKeyField, problem: "is not a public key"},
	}...)

	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := map[string]any{"address": "db", "networkTunnel": map[string]any{"sshForwarding": map[string]any{
				"sshEndpoint": sshd.Endpoint(), "privateKey": tc.privateKey, "hostKey": tc.hostKey,
			}}}
			_, parseErr := Parse(mustJSON(t, doc))
			tunnel, openErr := sshtunnel.Open(context.Background(), sshtunnel.Config{
				Endpoint: sshd.Endpoint(), PrivateKey: tc.privateKey, HostKey: tc.hostKey, Logger: quiet,
			})
			if openErr == nil {
				tunnel.Close()
			}

			if tc.field == "" {
				if parseErr != nil || openErr != nil {
					t.Fatalf("want the key accepted; Parse: %v; Open: %v", parseErr, openErr)
				}
				return
			}
			if parseErr == nil || openErr == nil {
				t.Fatalf("want the key refused by both; Parse: %v; Open: %v", parseErr, openErr)
			}
			// The same parser refused it, so the reasons read the same.
			reason := strings.TrimPrefix(openErr.Error(), "ssh tunnel: ")
			if !strings.HasSuffix(parseErr.Error(), reason) {
				t.Errorf("Parse and Open refuse for different reasons:\nParse: %v\nOpen:  %v", parseErr, openErr)
			}
			if !strings.HasPrefix(reason, tc.field+" ") || !strings.Contains(reason, tc.problem) {
				t.Errorf("error %q\ndoes not start with %s and contain %q", reason, tc.field, tc.problem)
			}
			if strings.Contains(reason, "hunter2") || strings.Contains(reason, pemLine(tc.privateKey)) {
				t.Errorf("error %q quotes the key", reason)
			}
		})
	}
}

// pemLine returns the first line of a PEM body, or a string no message holds.
func pemLine(key string) string {
	if lines := strings.Split(strings.TrimSpace(key), "\n"); len(lines) > 2 && len(lines[1]) >= 20 {
		return lines[1][:20]
	}
	return "\x00"
}

// dsaKey returns a real DSA private key in PEM, which SSH libraries still
// parse but current SSH servers refuse.
func dsaKey(t *testing.T) string {
	t.Helper()
	var key dsa.PrivateKey
	if err := dsa.GenerateParameters(&key.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(&key, rand.Reader); err != nil {
		t.Fatal(err)
	}
	// OpenSSL's "DSA PRIVATE KEY" layout, which ssh.ParsePrivateKey reads.
	der, err := asn1.Marshal(struct {
		Version       int
		P, Q, G, Y, X *big.Int
	}{0, key.P, key.Q, key.G, key.Y, key.X})
	if err != nil {
		t.Fatal(err)
	}
	return encodePEM("DSA PRIVATE KEY", der)
}

func encryptedOpenSSHKey(t *testing.T) string {
	t.Helper()
	private, _ := newSSHKey(t, "passphrase")
	return private
}

// encryptedLegacyKey encrypts a PKCS#1 key as "ssh-keygen -m PEM" did.
func encryptedLegacyKey(t *testing.T, rsaPEM string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(rsaPEM))
	// Deprecated, but old keys are encrypted this way and must be recognized.
	encrypted, err := x509.EncryptPEMBlock(rand.Reader, block.Type, block.Bytes, []byte("passphrase"), x509.PEMCipherAES256) //nolint:staticcheck // see above
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(encrypted))
}
