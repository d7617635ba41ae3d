//go:build !linux

package tcpdial

import (
	"syscall"
	"time"
)

// userTimeout does nothing where TCP_USER_TIMEOUT does not exist: there,
// keepalives alone bound how long a dead peer goes unnoticed.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
