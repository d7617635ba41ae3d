package sshtunnel

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
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
//
// When the tunnel goes down, reads and writes fail with an error that says
// so, rather than with the io.EOF of a server that closed the connection.
func (t *Tunnel) newChannelConn(channel net.Conn, network, addr string) net.Conn {
	local, remote := net.Pipe()
	c := &channelConn{Conn: local, remoteAddr: dialedAddr{network, addr}, tunnel: t}
	go func() {
		// From the caller to the far end. Closing the channel ends the copy
		// below, once the far end has seen it.
		io.Copy(channel, remote) //nolint:errcheck // either end closing ends the copy; the copy below records why
		channel.Close()          //nolint:errcheck // teardown; the copies have recorded why
	}()
	go func() {
		// From the far end to the caller, and the only goroutine to close
		// the caller's end, so that it can first record why it does.
		_, err := io.Copy(remote, channel)
		// The channel reads io.EOF (which io.Copy reports as nil) both when
		// the far end closes it and when the SSH connection drops.
		if err == nil && !c.closed.Load() {
			if cause := t.lost(); cause != nil {
				c.down.Store(&tunnelDownError{op: "using the connection to", addr: addr, cause: cause})
			}
		}
		remote.Close()  //nolint:errcheck // teardown; the copies have recorded why
		channel.Close() //nolint:errcheck // teardown; the copies have recorded why
	}()
	return c
}

// channelConn is the caller's end of a channel. It reports the address
// dialed through the tunnel as its remote address, rather than the pipe's.
type channelConn struct {
	net.Conn
	remoteAddr dialedAddr
	tunnel     *Tunnel
	closed     atomic.Bool                     // Close was called
	down       atomic.Pointer[tunnelDownError] // set before the pipe closes
}

func (c *channelConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, io.EOF) {
		err = c.cause(err)
	}
	return n, err
}

func (c *channelConn) Write(b []byte) (int, error) {
	// Data written once the tunnel has failed would seem sent, and the
	// failure would surface only at the next read, as an io.EOF.
	if cause := c.tunnel.cause(); cause != nil {
		return 0, &tunnelDownError{op: "using the connection to", addr: c.remoteAddr.addr, cause: cause}
	}
	n, err := c.Conn.Write(b)
	if errors.Is(err, io.ErrClosedPipe) {
		err = c.cause(err)
	}
	return n, err
}

func (c *channelConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// cause returns the tunnel's failure if it is why the connection ended, and
// err otherwise.
func (c *channelConn) cause(err error) error {
	if down := c.down.Load(); down != nil {
		return down
	}
	return err
}

func (c *channelConn) RemoteAddr() net.Addr { return c.remoteAddr }

// dialedAddr is an address as given to DialContext, unresolved because the
// SSH server resolves it.
type dialedAddr struct{ network, addr string }

func (a dialedAddr) Network() string { return a.network }
func (a dialedAddr) String() string  { return a.addr }
