package sshtunnel

import (
	"io"
	"net"
)

// newChannelConn returns a connection that carries the traffic of an SSH
// channel and, unlike the channel, honors deadlines. pgconn depends on them:
// it interrupts a blocked read by setting a deadline when a context ends,
// and the replication stream relies on read timeouts to send its status
// updates on time.
//
// The caller's end is one side of a net.Pipe, whose deadlines are exact and
// leave the stream intact after a timeout; two goroutines copy between the
// other side and the channel. Data read from the channel waits in its copy
// goroutine until the caller reads it, so a timed-out Read loses nothing.
func newChannelConn(channel net.Conn, network, addr string) net.Conn {
	local, remote := net.Pipe()
	go pump(channel, remote)
	go pump(remote, channel)
	return &channelConn{Conn: local, remoteAddr: dialedAddr{network, addr}}
}

// pump copies from src to dst until either fails, then closes both, so that
// the copy in the other direction ends too and each side sees the other go.
// The channel reports a clean close by the far end as io.EOF, which reaches
// the caller as io.EOF.
func pump(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// channelConn reports the address dialed through the tunnel as its remote
// address, rather than the pipe's.
type channelConn struct {
	net.Conn
	remoteAddr dialedAddr
}

func (c *channelConn) RemoteAddr() net.Addr { return c.remoteAddr }

// dialedAddr is an address as given to DialContext, unresolved because the
// SSH server resolves it.
type dialedAddr struct{ network, addr string }

func (a dialedAddr) Network() string { return a.network }
func (a dialedAddr) String() string  { return a.addr }
