package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"pgcapture/sqlcapture"
	"pgcapture/sshtunnel"
)

func TestClassify(t *testing.T) {
	pgErr := func(code string) error { return &pgconn.PgError{Severity: "FATAL", Code: code, Message: "m"} }
	for _, tc := range []struct {
		name      string
		err       error
		transient bool
	}{
		{"connection reset", fmt.Errorf("receiving: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"EOF mid-message", fmt.Errorf("receive message failed: %w", io.ErrUnexpectedEOF), true},
		{"EOF", io.EOF, true},
		{"closed by the liveness deadline", net.ErrClosed, true},
		{"connect timeout", fmt.Errorf("dial: %w", context.DeadlineExceeded), true},
		{"tunnel down", fmt.Errorf("dialing: %w", sshtunnel.ErrDown), true},
		{"admin shutdown", pgErr("57P01"), true},
		{"crash shutdown", pgErr("57P02"), true},
		{"starting up", pgErr("57P03"), true},
		{"connection failure", pgErr("08006"), true},
		{"slot active", fmt.Errorf("starting replication: %w", pgErr("55006")), true},
		{"too many connections", pgErr("53300"), true},
		{"password", pgErr("28P01"), false},
		{"no such role", pgErr("28000"), false},
		{"missing slot", pgErr("42704"), false},
		{"permission", pgErr("42501"), false},
		{"syntax", pgErr("42601"), false},
		{"cancelled", fmt.Errorf("query: %w", context.Canceled), false},
		{"plain", errors.New("table t has no primary key"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.err)
			if sqlcapture.IsTransient(got) != tc.transient {
				t.Errorf("Classify(%v) transient = %v, want %v", tc.err, !tc.transient, tc.transient)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("Classify(%v) = %v, which does not wrap it", tc.err, got)
			}
		})
	}
}
