package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"pgcapture/testsupport"
)

// testCA is a certificate authority made up by a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	template := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	ca := &testCA{}
	var der []byte
	ca.key, der = signCertificate(t, template, nil, nil)
	var err error
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	ca.pem = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

// issue returns a server certificate for the IP addresses and names in
// hosts, and its key, in PEM.
func (ca *testCA) issue(t *testing.T, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	template := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			template.IPAddresses = append(template.IPAddresses, ip)
		} else {
			template.DNSNames = append(template.DNSNames, h)
		}
	}
	key, der := signCertificate(t, template, ca.cert, ca.key)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// signCertificate makes a key for template and signs it with parent's key,
// or with its own when parent is nil.
func signCertificate(t *testing.T, template, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = serial
	template.NotBefore, template.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = template, key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// TestTLS captures from a server that accepts only TLS connections, with a
// certificate for 127.0.0.1 issued by a CA of the test's.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "pgcapture test CA")
	cert, key := ca.issue(t, "127.0.0.1")
	pg := testsupport.StartPostgres(t, testsupport.Options{
		Settings: map[string]string{"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"},
		Files:    map[string][]byte{"server.crt": cert, "server.key": key},
		// Plain connections are refused, replication ones included.
		HBA: []string{
			"hostnossl all         all 0.0.0.0/0 reject",
			"hostnossl replication all 0.0.0.0/0 reject",
		},
	})
	f := newFixtureOn(t, pg)
	f.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	f.exec(t, "INSERT INTO public.t VALUES (1, 'one'), (2, 'two')")
	bin := newConnectorBin(t, "LOG_FORMAT=json")
	withTLS := func(address, sslmode, caPEM string) map[string]any {
		cfg := f.config()
		cfg["address"] = address
		adv := cfg["advanced"].(map[string]any)
		adv["sslmode"], adv["ssl_ca"] = sslmode, caPEM
		return cfg
	}
	port := strconv.Itoa(pg.Port())

	t.Run("failures", func(t *testing.T) {
		wrongCA := newTestCA(t, "another CA")
		for _, tc := range []struct {
			name string
			cfg  map[string]any
			want []string
		}{{
			name: "wrong CA",
			cfg:  withTLS(pg.Addr(), "verify-full", wrongCA.pem),
			want: []string{fmt.Sprintf(`the TLS certificate of the server at %s is not signed by the CA in "advanced.ssl_ca"`, pg.Addr())},
		}, {
			name: "wrong host name",
			cfg:  withTLS("localhost:"+port, "verify-full", ca.pem),
			want: []string{`the TLS certificate of the server is not valid for host "localhost" (it names 127.0.0.1)`, `"verify-ca"`},
		}, {
			name: "TLS required by pg_hba.conf",
			cfg:  withTLS(pg.Addr(), "disable", ""),
			want: []string{fmt.Sprintf(`the server at %s accepts user "postgres" for database %q only over TLS, but "advanced.sslmode" is "disable"`, pg.Addr(), f.db)},
		}} {
			t.Run(tc.name, func(t *testing.T) {
				expectFailure(t, "discover", bin.request(t, discoverRequest(tc.cfg)), tc.want...)
			})
		}
	})

	cfg := withTLS(pg.Addr(), "verify-full", ca.pem)
	if r := bin.request(t, discoverRequest(cfg)); r.err != nil {
		t.Fatalf("discover with verify-full and the right CA: %v\n%s", r.err, r.stderr)
	}
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(cfg, bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill", func(s *testsupport.Session) bool { return len(s.Docs()) == 2 })
	f.exec(t, "INSERT INTO public.t VALUES (3, 'three')")
	s.WaitFor(t, 30*time.Second, "the insert, replicated", func(s *testsupport.Session) bool { return len(s.Docs()) == 3 })

	// The walsender serving the capture is on a TLS connection too.
	var walsenders, encrypted int
	err := f.conn.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE s.ssl)
		FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
		WHERE a.backend_type = 'walsender' AND a.application_name = 'source-postgres' AND a.datname = $1`, f.db).Scan(&walsenders, &encrypted)
	if err != nil {
		t.Fatal(err)
	}
	if walsenders != 1 || encrypted != 1 {
		t.Errorf("%d walsenders serve the capture, %d of them over TLS; want 1 and 1", walsenders, encrypted)
	}
}
