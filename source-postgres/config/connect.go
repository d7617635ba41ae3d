package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"pgcapture/tcpdial"
)

// ConnectTimeout bounds how long establishing one connection may take,
// including TLS and authentication, so an unreachable server fails promptly
// with an error rather than hanging until the runtime gives up.
const ConnectTimeout = 20 * time.Second

// ApplicationName identifies the connector's sessions in pg_stat_activity.
const ApplicationName = "source-postgres"

// DialFunc opens a network connection to addr, such as through an SSH tunnel.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// ConnConfig returns the pgconn configuration for connecting to the database
// that e, a configuration that passed Validate, describes.
//
// runtimeParams are sent in the startup message, after application_name,
// which they may override; "replication": "database" makes a replication
// connection. If dial is not nil every connection is opened through it and
// the database host is passed to it unresolved, so that an SSH server can
// resolve names only known inside its network.
func (e *Endpoint) ConnConfig(runtimeParams map[string]string, dial DialFunc) (*pgconn.Config, error) {
	host, port, err := splitAddress(e.Address)
	if err != nil {
		return nil, fmt.Errorf(`endpoint "address" %w`, err)
	}

	// pgconn.Config must come from ParseConfig. Every setting that decides
	// where and how to connect is spelled out so that PG* environment
	// variables and files in the home directory (~/.pgpass, ~/.postgresql)
	// cannot change it. The password and TLS material are set on the parsed
	// Config instead, so they never appear in a connection string or in
	// ParseConfig's errors.
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s connect_timeout=%d "+
		"sslmode=disable sslnegotiation=postgres sslcertmode=allow sslrootcert='' sslcert='' sslkey='' "+
		"passfile='' target_session_attrs=any",
		quoteDSN(host), port, quoteDSN(e.Database), quoteDSN(e.User), int(ConnectTimeout/time.Second))
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("building connection settings for %s: %w", net.JoinHostPort(host, fmt.Sprint(port)), err)
	}
	cfg.Password = e.Password

	tlsConfigs, err := e.Advanced.tlsConfigs(host)
	if err != nil {
		return nil, err
	}
	cfg.TLSConfig = tlsConfigs[0]
	cfg.Fallbacks = nil
	for _, t := range tlsConfigs[1:] {
		cfg.Fallbacks = append(cfg.Fallbacks, &pgconn.FallbackConfig{Host: host, Port: port, TLSConfig: t})
	}

	cfg.RuntimeParams = map[string]string{"application_name": ApplicationName}
	for k, v := range runtimeParams {
		cfg.RuntimeParams[k] = v
	}

	if dial != nil {
		cfg.DialFunc = pgconn.DialFunc(dial)
		cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) {
			return []string{host}, nil
		}
	} else {
		// A connection to a host that vanished, or behind a NAT that
		// dropped it, ends after about the network timeout instead of the
		// system's hours; a tunnel's own connection is set up the same way.
		cfg.DialFunc = tcpdial.Dialer(e.NetworkTimeout()).DialContext
	}
	return cfg, nil
}

// quoteDSN quotes a value of a keyword/value connection string.
func quoteDSN(value string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value) + "'"
}

// tlsConfigs returns the TLS configurations to try in order, nil meaning a
// plain connection, following libpq's meaning of sslmode:
//
//   - disable: plain only.
//   - allow: plain first, then TLS without verification.
//   - prefer: TLS without verification first, then plain.
//   - require: TLS; the chain is verified only if ssl_ca is given, as libpq
//     does when a root certificate file exists.
//   - verify-ca: TLS, verifying the chain against ssl_ca or the system's CAs.
//   - verify-full: as verify-ca, and the certificate must name host.
//
// allow and prefer never verify even with ssl_ca: they fall back to a plain
// connection, so anyone able to fail verification could downgrade it anyway.
func (a *Advanced) tlsConfigs(host string) ([]*tls.Config, error) {
	mode := a.sslMode()
	if mode == "disable" {
		return []*tls.Config{nil}, nil
	}

	cfg := &tls.Config{}
	// Send the name for SNI, which proxies in front of managed databases use
	// to route; RFC 6066 forbids sending IP addresses.
	if net.ParseIP(host) == nil {
		cfg.ServerName = host
	}
	if a.SSLCert != "" || a.SSLKey != "" {
		cert, err := parseClientCertificate(a.SSLCert, a.SSLKey)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	var roots *x509.CertPool // nil means the system's CAs
	if a.SSLCA != "" {
		var err error
		if roots, err = parseCertPool(a.SSLCA); err != nil {
			return nil, fmt.Errorf(`"advanced.ssl_ca" %w`, err)
		}
	}

	switch mode {
	case "allow":
		cfg.InsecureSkipVerify = true
		return []*tls.Config{nil, cfg}, nil
	case "prefer":
		cfg.InsecureSkipVerify = true
		return []*tls.Config{cfg, nil}, nil
	case "require":
		if roots == nil {
			cfg.InsecureSkipVerify = true
		} else {
			verifyChainOnly(cfg, roots)
		}
	case "verify-ca":
		verifyChainOnly(cfg, roots)
	case "verify-full":
		cfg.RootCAs = roots
		cfg.ServerName = host // Go checks IP addresses against the IP SANs.
	default:
		return nil, fmt.Errorf(`"advanced.sslmode" %q is not a valid mode: use one of %s`, mode, strings.Join(sslModes, ", "))
	}
	return []*tls.Config{cfg}, nil
}

// verifyChainOnly makes cfg verify the server's certificate chain against
// roots but not the host name, as libpq's verify-ca does. Go's verification
// always checks the name, so it is turned off and done here instead.
func verifyChainOnly(cfg *tls.Config, roots *x509.CertPool) {
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server presented no TLS certificate")
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			// The same error type Go returns from verify-full's verification.
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		}
		return nil
	}
}
