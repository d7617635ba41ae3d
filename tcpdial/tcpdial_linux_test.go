package tcpdial

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDialerSetsTimeouts dials a loopback listener and reads back the
// socket options the kernel applied.
func TestDialerSetsTimeouts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		timeout                  time.Duration
		idle, interval, userTime int // seconds, seconds, milliseconds
	}{
		{30 * time.Second, 10, 4, 30000}, // 3.3s rounds up
		{2 * time.Second, 1, 1, 2000},
	} {
		conn, err := Dialer(tc.timeout).DialContext(context.Background(), "tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		raw, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got [4]int
		var gerr error
		raw.Control(func(fd uintptr) { //nolint:errcheck // the socket options read inside are checked below
			for i, opt := range []struct{ level, name int }{
				{unix.SOL_SOCKET, unix.SO_KEEPALIVE},
				{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
				{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
				{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
			} {
				if got[i], err = unix.GetsockoptInt(int(fd), opt.level, opt.name); err != nil {
					gerr = err
				}
			}
		})
		conn.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
		if gerr != nil {
			t.Fatal(gerr)
		}
		if want := [4]int{1, tc.idle, tc.interval, tc.userTime}; got != want {
			t.Errorf("timeout %s: keepalive, idle, interval, user timeout = %v, want %v", tc.timeout, got, want)
		}
	}
}
