package testsupport

import (
	"errors"
	"net"
	"sync"
	"testing"
)

// ServeTCP runs a TCP server on a free loopback port until the test ends,
// handling each connection with handle in its own goroutine, and returns its
// address. Connections still open at the end are closed, which ends their
// handlers. handle(c) = io.Copy(c, c) makes an echo server; io.Copy(io.Discard, c)
// a server that accepts and never answers.
func ServeTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		l.Close() //nolint:errcheck // test teardown
		mu.Lock()
		for _, c := range conns {
			c.Close() //nolint:errcheck // test teardown
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			} else if err != nil {
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}
