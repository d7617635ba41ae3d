// Package faults sorts the failures of connections to PostgreSQL into those
// that reconnecting may cure, which it marks sqlcapture.Transient, and the
// rest, which end the capture at once.
//
// Transient: the network failing (reset, refused, unreachable, timed out,
// closed mid-message), a tunnel that went down, and the server ending or
// refusing sessions while it shuts down, crashes or starts (SQLSTATE class
// 08, 57P01-57P03), is out of connection slots (53300), or still holds the
// replication slot for a session of ours that it has not noticed is gone
// (55006). The engine retries these for a bounded time.
//
// Everything else is permanent, in particular failed authentication (class
// 28), a missing object such as the slot (42704), missing privileges
// (42501), and TLS or configuration errors: retrying cannot cure them and
// would only hide them.
package faults

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"pgcapture/sqlcapture"
	"pgcapture/sshtunnel"
)

// Classify returns err marked sqlcapture.Transient if reconnecting may cure
// it, and err unchanged otherwise.
func Classify(err error) error {
	if err == nil || sqlcapture.IsTransient(err) || !IsTransient(err) {
		return err
	}
	return sqlcapture.Transient(err)
}

// IsTransient reports whether reconnecting may cure err.
func IsTransient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // the capture is stopping
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return transientCode(pgErr.Code)
	}
	if errors.Is(err, sshtunnel.ErrDown) {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN} {
		if errors.Is(err, errno) {
			return true
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true // any other failure to dial, read or write
	}
	if netErr, ok := errors.AsType[net.Error](err); ok && netErr.Timeout() {
		return true
	}
	return false
}

// transientCode reports whether a server error of this SQLSTATE says that
// the server, rather than the request, is the problem for now.
func transientCode(code string) bool {
	switch code {
	case "57P01", // admin_shutdown: a fast or immediate shutdown, or a terminated backend
		"57P02", // crash_shutdown: another backend crashed
		"57P03", // cannot_connect_now: starting up or shutting down
		"53300", // too_many_connections
		"55006": // object_in_use: "replication slot is active for PID …", a session of ours the server has not yet seen die
		return true
	}
	return len(code) == 5 && code[:2] == "08" // connection_exception
}
