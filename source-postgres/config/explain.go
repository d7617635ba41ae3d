package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ExplainConnectError turns an error from connecting with e's ConnConfig into
// one whose first line tells the user what is wrong and which setting to fix,
// followed by the original error on the next line. The original error stays
// wrapped, so errors.Is and errors.As still see it. Errors it does not
// recognize are returned unchanged, and nil stays nil.
//
// The explanation quotes only the address, database, user and sslmode, never
// a password or key.
func ExplainConnectError(err error, e *Endpoint) error {
	if err == nil {
		return nil
	}
	if msg := explain(err, e); msg != "" {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && isAuthFailure(pgErr) {
			// The server's verdict is the whole story: the other attempts
			// (sslmode prefer tries TLS first, which a server without it
			// refuses) only hide it.
			return &explainedError{msg: msg, shown: pgErr, err: err}
		}
		return fmt.Errorf("%s\ncaused by: %w", msg, err)
	}
	return err
}

// isAuthFailure reports whether the server refused to authenticate the user.
func isAuthFailure(pgErr *pgconn.PgError) bool {
	return pgErr.Code == "28P01" || pgErr.Code == "28000" // invalid_password, invalid_authorization_specification
}

// explainedError is an explanation followed by the one cause worth
// showing, while it wraps the whole error for errors.Is and errors.As.
type explainedError struct {
	msg   string
	shown error
	err   error
}

func (e *explainedError) Error() string { return e.msg + "\ncaused by: " + e.shown.Error() }
func (e *explainedError) Unwrap() error { return e.err }

func explain(err error, e *Endpoint) string {
	host, port := e.HostPort()
	address := net.JoinHostPort(host, strconv.Itoa(int(port)))
	mode := e.Advanced.sslMode()

	// An error from the server is the most specific: when several attempts
	// failed (several IP addresses of a name, or TLS and then plain), the one
	// that got as far as the server says the most.
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		if msg := explainServerError(pgErr, e, address, mode); msg != "" {
			return msg
		}
	}

	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		if e.Advanced.SSLCA != "" {
			return fmt.Sprintf(`the TLS certificate of the server at %s is not signed by the CA in "advanced.ssl_ca": paste the certificate of the CA that issued the server's certificate`, address)
		}
		return fmt.Sprintf(`the TLS certificate of the server at %s is not signed by a trusted CA: paste the server's CA certificate into "advanced.ssl_ca"`, address)
	}
	if hostErr, ok := errors.AsType[x509.HostnameError](err); ok {
		names := append([]string(nil), hostErr.Certificate.DNSNames...)
		for _, ip := range hostErr.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		valid := "no host names"
		if len(names) > 0 {
			valid = strings.Join(names, ", ")
		}
		return fmt.Sprintf(`the TLS certificate of the server is not valid for host %q (it names %s), which sslmode "verify-full" requires: set "address" to a name the certificate lists, or set "advanced.sslmode" to "verify-ca"`, host, valid)
	}
	if invalidErr, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		if invalidErr.Reason == x509.Expired {
			return fmt.Sprintf("the TLS certificate of the server at %s has expired or is not yet valid: renew the server's certificate", address)
		}
		return fmt.Sprintf("the TLS certificate of the server at %s is not valid (%s)", address, invalidErr.Error())
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return fmt.Sprintf(`the TLS certificate of the server at %s failed verification with sslmode %q`, address, mode)
	}
	if strings.Contains(err.Error(), "server refused TLS connection") {
		return fmt.Sprintf(`the server at %s does not support TLS, but "advanced.sslmode" is %q: enable ssl on the server, or set "advanced.sslmode" to "prefer" or "disable"`, address, mode)
	}

	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok && dnsErr.IsNotFound {
		return fmt.Sprintf(`host %q of "address" could not be resolved: check its spelling, or configure an SSH tunnel if it is only known inside a private network`, host)
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf(`nothing accepts connections at %s (connection refused): check "address", and that PostgreSQL is running and listens on that interface and port (listen_addresses, port)`, address)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf(`the host at %s is unreachable from the connector: check "address", or configure an SSH tunnel for a private network`, address)
	case pgconn.Timeout(err), errors.Is(err, context.DeadlineExceeded), isNetTimeout(err):
		return fmt.Sprintf(`the database at %s did not respond before the connection attempt timed out: check "address", and that firewalls and IP allow-lists admit the connector, or configure an SSH tunnel`, address)
	}
	return ""
}

func explainServerError(pgErr *pgconn.PgError, e *Endpoint, address, mode string) string {
	switch pgErr.Code {
	case "28P01": // invalid_password
		return fmt.Sprintf(`password authentication failed for user %q: check "user" and "password"`, e.User)
	case "3D000": // invalid_catalog_name
		return fmt.Sprintf(`database %q does not exist on the server at %s: check "database"`, e.Database, address)
	case "42501": // insufficient_privilege
		if strings.Contains(pgErr.Message, "permission denied for database") {
			return fmt.Sprintf(`user %q may not connect to database %q because it lacks the CONNECT privilege: run GRANT CONNECT ON DATABASE %s TO %s`,
				e.User, e.Database, pgx.Identifier{e.Database}.Sanitize(), pgx.Identifier{e.User}.Sanitize())
		}
	case "53300": // too_many_connections
		return fmt.Sprintf("the server at %s has no free connection slots: close idle sessions or raise max_connections", address)
	case "57P03": // cannot_connect_now
		return fmt.Sprintf("the server at %s is starting up, shutting down or in recovery and does not accept connections yet", address)
	case "28000": // invalid_authorization_specification
		msg := pgErr.Message
		switch {
		// "no encryption" from 14 on, "SSL off" in 13.
		case strings.Contains(msg, "pg_hba.conf") && (strings.Contains(msg, "no encryption") || strings.Contains(msg, "SSL off")):
			return fmt.Sprintf(`the server at %s accepts user %q for database %q only over TLS, but "advanced.sslmode" is %q: set it to "require" or "verify-full", or ask the database administrator for a pg_hba.conf entry`, address, e.User, e.Database, mode)
		case strings.Contains(msg, "no pg_hba.conf entry"):
			return fmt.Sprintf(`the server at %s has no pg_hba.conf entry that lets user %q connect to database %q from the connector's address: ask the database administrator to add one for the connector's IP address`, address, e.User, e.Database)
		case strings.Contains(msg, "does not exist"):
			return fmt.Sprintf(`user %q does not exist on the server at %s: check "user"`, e.User, address)
		case strings.Contains(msg, "certificate"):
			return fmt.Sprintf(`the server at %s requires a valid client certificate for user %q: set "advanced.ssl_cert" and "advanced.ssl_key" to a certificate issued for that user`, address, e.User)
		}
	}
	return ""
}

func isNetTimeout(err error) bool {
	netErr, ok := errors.AsType[net.Error](err)
	return ok && netErr.Timeout()
}
