package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testCA is a certificate authority made up for a test.
type testCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := newECKey(t)
	template := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		t.Fatalf("creating CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing CA certificate: %v", err)
	}
	return &testCA{cert: cert, key: key, certPEM: encodePEM("CERTIFICATE", der)}
}

// issue returns a certificate and its PKCS#8 key, in PEM, for commonName and
// the given host names and IP addresses.
func (ca *testCA) issue(t *testing.T, commonName string, usage x509.ExtKeyUsage, hosts ...string) (certPEM, keyPEM string) {
	t.Helper()
	key := newECKey(t)
	template := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			template.IPAddresses = append(template.IPAddresses, ip)
		} else {
			template.DNSNames = append(template.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatalf("issuing certificate for %q: %v", commonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("encoding key: %v", err)
	}
	return encodePEM("CERTIFICATE", der), encodePEM("PRIVATE KEY", keyDER)
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	return key
}

func randomSerial(t *testing.T) *big.Int {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("generating serial number: %v", err)
	}
	return serial
}

func encodePEM(blockType string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}))
}

// newSSHKey returns an Ed25519 private key in OpenSSH PEM form, encrypted with
// passphrase unless it is empty, and its public key in authorized_keys form.
func newSSHKey(t *testing.T, passphrase string) (privatePEM, public string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generating SSH key: %v", err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatalf("encoding SSH key: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("encoding SSH public key: %v", err)
	}
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
}

// testSecrets are the secret values of fullConfig. No error may contain them.
type testSecrets struct {
	password, sslKey, sshKey string
}

// fullConfig returns a valid endpoint configuration, as decoded JSON, in
// which every field including every secret is set.
func fullConfig(t *testing.T) (map[string]any, testSecrets) {
	t.Helper()
	ca := newTestCA(t, "Test CA")
	clientCert, clientKey := ca.issue(t, "flow_capture", x509.ExtKeyUsageClientAuth)
	sshKey, hostKey := newSSHKey(t, "")
	secrets := testSecrets{password: "hunter2-do-not-leak", sslKey: clientKey, sshKey: sshKey}
	return map[string]any{
		"address":  "db.example.com:6543",
		"database": "shop",
		"user":     "capture",
		"password": secrets.password,
		"advanced": map[string]any{
			"backfill_chunk_size": 1000,
			"publicationName":     "shop_publication",
			"slotName":            "shop_slot",
			"watermarksTable":     "flow.watermarks",
			"skip_backfills":      "public.events, public.audit_log",
			"sslmode":             "verify-full",
			"ssl_ca":              ca.certPEM,
			"ssl_cert":            clientCert,
			"ssl_key":             clientKey,
		},
		"networkTunnel": map[string]any{
			"sshForwarding": map[string]any{
				"sshEndpoint": "ssh://flow@bastion.example.com:2222",
				"privateKey":  sshKey,
				"hostKey":     hostKey,
			},
		},
	}, secrets
}

// leaks returns the secret that text contains, or "".
func (s testSecrets) leaks(text string) string {
	for _, secret := range []string{s.password, s.sslKey, s.sshKey} {
		// Any line of a PEM body would be a leak, not only the whole key.
		for line := range strings.Lines(secret) {
			line = strings.TrimSpace(line)
			if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(text, line) {
				return line
			}
		}
		if strings.Contains(text, secret) {
			return secret
		}
	}
	return ""
}

// setPath sets the value at a dotted path of a decoded JSON object, creating
// objects on the way; a nil value deletes the field.
func setPath(doc map[string]any, path string, value any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := doc[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			doc[p] = next
		}
		doc = next
	}
	last := parts[len(parts)-1]
	if value == nil {
		delete(doc, last)
	} else {
		doc[last] = value
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding JSON: %v", err)
	}
	return b
}
