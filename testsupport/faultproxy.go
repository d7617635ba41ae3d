package testsupport

import (
	"errors"
	"net"
	"sync"
	"testing"
)

// FaultProxy forwards loopback TCP connections to a target and injects
// network faults between the two: Cut resets every connection, Blackhole
// stops forwarding in both directions without closing anything (a silent
// partition), and Heal resumes it.
//
// The proxy's own kernel still acknowledges what each side sends, so a
// blackhole looks to both sides like a peer that is alive but silent: only
// an application-level deadline notices it, as with a paused server.
type FaultProxy struct {
	target string
	l      net.Listener

	mu    sync.Mutex
	conns map[net.Conn]bool
	// flowing is closed while traffic flows, and replaced by an open
	// channel while blackholed.
	flowing chan struct{}
	wg      sync.WaitGroup
}

// StartFaultProxy listens on a free loopback port and forwards each
// connection to target until the test ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{target: target, l: l, conns: map[net.Conn]bool{}, flowing: make(chan struct{})}
	close(p.flowing)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		l.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
		p.Heal()
		p.closeAll(false)
		p.wg.Wait()
	})
	return p
}

// Addr returns the proxy's "host:port".
func (p *FaultProxy) Addr() string { return p.l.Addr().String() }

// Cut resets every open connection (an RST to both sides), as a crashed
// middlebox or a killed peer process would. New connections are accepted.
func (p *FaultProxy) Cut() { p.closeAll(true) }

// Blackhole stops forwarding in both directions, on open connections and
// on those accepted from now on, until Heal.
func (p *FaultProxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
		p.flowing = make(chan struct{})
	default:
	}
}

// Heal resumes forwarding, including what was held back.
func (p *FaultProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
	default:
		close(p.flowing)
	}
}

// Open returns how many connections are open through the proxy.
func (p *FaultProxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *FaultProxy) closeAll(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok && reset {
			tc.SetLinger(0) //nolint:errcheck // SO_LINGER 0: the close is an RST; if it cannot be set, the close is still a close
		}
		c.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
		delete(p.conns, c)
	}
}

// wait blocks while the proxy is blackholed.
func (p *FaultProxy) wait() {
	p.mu.Lock()
	flowing := p.flowing
	p.mu.Unlock()
	<-flowing
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		} else if err != nil {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.wait() // a blackholed network answers no new connection either
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				client.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
				return
			}
			p.mu.Lock()
			p.conns[client], p.conns[server] = true, true
			p.mu.Unlock()
			done := make(chan struct{}, 2)
			go p.pump(server, client, done)
			go p.pump(client, server, done)
			<-done
			<-done
		}()
	}
}

// pump copies from src to dst, holding data back while blackholed. When
// either side ends, both are closed.
func (p *FaultProxy) pump(dst, src net.Conn, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		p.wait()
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			p.mu.Lock()
			delete(p.conns, src)
			delete(p.conns, dst)
			p.mu.Unlock()
			src.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
			dst.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
			return
		}
	}
}
