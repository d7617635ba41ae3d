// Package sshtunnel reaches a database through an SSH server, the way
// "ssh -L" does but inside the process: each connection is an SSH
// direct-tcpip channel, so no local port is opened. One Tunnel carries any
// number of concurrent connections over a single SSH connection.
package sshtunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"

	"pgcapture/tcpdial"
)

const (
	// DefaultKeepaliveInterval is used when Config.KeepaliveInterval is zero.
	DefaultKeepaliveInterval = 30 * time.Second
	// DefaultConnectTimeout bounds Open's dial, handshake and authentication
	// when the context has no earlier deadline.
	DefaultConnectTimeout = 20 * time.Second

	keepaliveRequest = "keepalive@openssh.com"
)

// Config describes how to reach the SSH server.
type Config struct {
	// Endpoint is the SSH server, as ssh://user@host[:port]; see ParseEndpoint.
	Endpoint string
	// PrivateKey authenticates the user: an unencrypted PEM-encoded Ed25519,
	// ECDSA or RSA key in OpenSSH, PKCS#1, SEC 1 or PKCS#8 form.
	PrivateKey string
	// HostKey optionally pins the server's public host key, in
	// authorized_keys format ("ssh-ed25519 AAAA..."); several lines pin
	// several keys, any of which is accepted. Empty trusts whatever key the
	// server presents, logging a warning with its fingerprint.
	HostKey string
	// KeepaliveInterval is how often the server is probed, and how long it
	// may take to answer before the tunnel is considered dead. Zero means
	// DefaultKeepaliveInterval.
	KeepaliveInterval time.Duration
	// Logger receives the warning about an unpinned host key. Nil means
	// logrus's standard logger, so that the warning is never lost.
	Logger logrus.FieldLogger
}

// Tunnel is an open SSH connection through which DialContext reaches hosts
// on the SSH server's network. It is safe for concurrent use.
type Tunnel struct {
	client *ssh.Client
	server string // host:port of the SSH server, for messages
	log    logrus.FieldLogger
	done   chan struct{}

	mu  sync.Mutex
	err error // why the tunnel ended; set once, before done is closed
}

// Open connects and authenticates to the SSH server described by cfg. It
// gives up when ctx ends or after DefaultConnectTimeout, whichever is first.
// Once open, the tunnel probes the server every cfg.KeepaliveInterval and
// closes itself if a probe goes unanswered.
func Open(ctx context.Context, cfg Config) (*Tunnel, error) {
	user, server, err := ParseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("ssh tunnel: %w", err)
	}
	signer, err := ParsePrivateKey(cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("ssh tunnel: %w", err)
	}
	interval := cfg.KeepaliveInterval
	switch {
	case interval == 0:
		interval = DefaultKeepaliveInterval
	case interval < 0:
		return nil, fmt.Errorf("ssh tunnel: the keepalive interval %s is negative", interval)
	}
	verifier := &hostKeyVerifier{logger: cfg.Logger}
	if verifier.logger == nil {
		verifier.logger = logrus.StandardLogger()
	}
	if verifier.pinned, err = ParseHostKeys(cfg.HostKey); err != nil {
		return nil, fmt.Errorf("ssh tunnel: %w", err)
	}
	clientConfig := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   verifier.check,
		HostKeyAlgorithms: verifier.algorithms(),
	}

	ctx, cancel := context.WithTimeoutCause(ctx, DefaultConnectTimeout,
		fmt.Errorf("gave up after %s", DefaultConnectTimeout))
	defer cancel()

	// The TCP connection gives up on an unresponsive server as soon as the
	// keepalive probes below would (two intervals), even in the middle of a
	// write that the probes cannot interrupt.
	conn, err := tcpdial.Dialer(2*interval).DialContext(ctx, "tcp", server)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ssh tunnel: connecting to SSH server %s: %w", server, context.Cause(ctx))
		}
		return nil, fmt.Errorf("ssh tunnel: SSH server %s is unreachable: %w; check %s and that the server accepts connections from here",
			server, err, endpointField)
	}
	// The handshake takes no context, so closing the connection is what
	// interrupts it when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() }) //nolint:errcheck // the handshake's error is the one reported
	sshConn, chans, reqs, err := ssh.NewClientConn(conn, server, clientConfig)
	if !stop() {
		if err == nil {
			sshConn.Close() //nolint:errcheck // the context's cause is the one reported
		}
		return nil, fmt.Errorf("ssh tunnel: SSH handshake with %s: %w", server, context.Cause(ctx))
	}
	if err != nil {
		return nil, handshakeError(err, server, user, signer, verifier)
	}

	t := &Tunnel{
		client: ssh.NewClient(sshConn, chans, reqs),
		server: server,
		log:    verifier.logger,
		done:   make(chan struct{}),
	}
	t.log.WithFields(logrus.Fields{"sshServer": server, "sshUser": user, "keepaliveInterval": interval.String()}).
		Debug("ssh tunnel: connected to the SSH server")
	go t.watch()
	go t.keepalive(interval)
	return t, nil
}

// handshakeError explains why the SSH handshake failed.
func handshakeError(err error, server, user string, signer ssh.Signer, verifier *hostKeyVerifier) error {
	if mismatch, ok := errors.AsType[*hostKeyMismatchError](err); ok {
		return fmt.Errorf("ssh tunnel: %w", mismatch)
	}
	// x/crypto has no distinct error type for refused authentication, so
	// this matches its message; other failures after key exchange (such as
	// a dropped connection) keep their own description.
	if verifier.passedKeyExchange() && strings.Contains(err.Error(), "unable to authenticate") {
		return fmt.Errorf("ssh tunnel: SSH server %s refused authentication for user %q: check that %s is right "+
			"and that its public key (%s %s) is in that user's authorized_keys on the server: %w",
			server, user, privateKeyField, signer.PublicKey().Type(), ssh.FingerprintSHA256(signer.PublicKey()), err)
	}
	return fmt.Errorf("ssh tunnel: SSH handshake with %s: %w", server, err)
}

// watch records why the SSH connection ended and announces it.
func (t *Tunnel) watch() {
	err := t.client.Wait()
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("the server closed the connection")
	}
	t.fail(fmt.Errorf("ssh tunnel: connection to SSH server %s lost: %w", t.server, err))
	close(t.done)
}

// keepalive probes the server every interval and ends the tunnel if a probe
// goes unanswered for an interval. Without it a silently vanished server (a
// dropped NAT mapping, a frozen host) would leave every connection hanging
// until TCP gives up, which takes hours.
func (t *Tunnel) keepalive(interval time.Duration) {
	timer := time.NewTimer(interval)
	defer timer.Stop()
	replies := make(chan error, 1)
	for {
		select {
		case <-t.done:
			return
		case <-timer.C:
		}
		go func() {
			// Servers answer unknown requests with a failure, which is as good
			// a sign of life as success.
			_, _, err := t.client.SendRequest(keepaliveRequest, true, nil)
			replies <- err
		}()
		timer.Reset(interval)
		select {
		case <-t.done:
			return
		case <-replies: //nolint:errcheck // an error means the connection is gone, which watch reports
		case <-timer.C:
			t.fail(fmt.Errorf("ssh tunnel: SSH server %s did not answer a keepalive within %s", t.server, interval))
			return
		}
		timer.Reset(interval)
	}
}

// fail ends the tunnel, keeping the first reason given.
func (t *Tunnel) fail(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
	t.client.Close() //nolint:errcheck // ending the tunnel; watch records why it ended
}

// DialContext connects to addr, as resolved and reached by the SSH server.
// Only TCP is supported; plug it into pgconn.Config.DialFunc. The returned
// connection supports deadlines. If the tunnel has ended, DialContext fails
// at once with an error wrapping the reason.
func (t *Tunnel) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := t.cause(); err != nil {
		return nil, &tunnelDownError{op: "dialing", addr: addr, cause: err}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("ssh tunnel: dialing %s: network %q is not supported, only tcp", addr, network)
	}
	// Checked here so that any error from the dial below is about the
	// channel or the SSH connection.
	if _, port, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("ssh tunnel: dialing %q: %w", addr, err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("ssh tunnel: dialing %q: the port is not a number from 0 to 65535", addr)
	}

	channel, err := t.client.DialContext(ctx, network, addr)
	if err == nil {
		t.log.WithField("address", addr).Trace("ssh tunnel: forwarding a connection")
		return t.newChannelConn(channel, network, addr), nil
	}
	if openErr, ok := errors.AsType[*ssh.OpenChannelError](err); ok {
		return nil, fmt.Errorf("ssh tunnel: dialing %s through SSH server %s: %w%s", addr, t.server, err, dialHint(openErr, addr))
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ssh tunnel: dialing %s through SSH server %s: %w", addr, t.server, err)
	}
	// Anything else means the SSH connection failed, which watch (or the
	// keepalive, if the connection is only half dead) is about to record.
	select {
	case <-t.done:
		return nil, &tunnelDownError{op: "dialing", addr: addr, cause: t.Err()}
	case <-ctx.Done():
		return nil, fmt.Errorf("ssh tunnel: dialing %s through SSH server %s: %w", addr, t.server, err)
	}
}

// tunnelDownError is a dial through a tunnel that has ended, or a
// connection through it that ended with it. It unwraps to the reason, whose
// "ssh tunnel: " prefix it does not repeat.
type tunnelDownError struct {
	op    string // "dialing", or "using the connection to"
	addr  string
	cause error
}

func (e *tunnelDownError) Error() string {
	return fmt.Sprintf("ssh tunnel: %s %s: the tunnel is down: %s", e.op, e.addr, strings.TrimPrefix(e.cause.Error(), "ssh tunnel: "))
}

func (e *tunnelDownError) Unwrap() error { return e.cause }

// Is makes a tunnelDownError match ErrDown.
func (e *tunnelDownError) Is(target error) bool { return target == ErrDown }

// ErrDown matches (errors.Is) the error of a dial through, or a connection
// over, a tunnel that has ended: a new tunnel may succeed where it failed.
var ErrDown = errors.New("the SSH tunnel is down")

// dialHint suggests a fix for a refused direct-tcpip channel.
func dialHint(err *ssh.OpenChannelError, addr string) string {
	switch err.Reason {
	case ssh.Prohibited:
		return "; the SSH server does not allow TCP forwarding for this user (see AllowTcpForwarding and PermitOpen in its sshd_config)"
	case ssh.ConnectionFailed:
		return fmt.Sprintf("; the SSH server could not connect to %s: check the database address as seen from the SSH server", addr)
	}
	return ""
}

// lost returns why the tunnel has ended, or nil if it is up. A request on
// the SSH connection tells: it fails only once the connection is gone.
func (t *Tunnel) lost() error {
	if _, _, err := t.client.SendRequest(keepaliveRequest, true, nil); err == nil {
		return nil
	}
	// The connection is failing; closing it makes sure that it ends, and
	// watch records why it did.
	t.client.Close() //nolint:errcheck // ending the tunnel; watch records why it ended
	<-t.done
	return t.Err()
}

// Done returns a channel that is closed when the tunnel has ended, through
// Close or a failure.
func (t *Tunnel) Done() <-chan struct{} { return t.done }

// Err returns why the tunnel ended, or nil while it is open. After Close it
// wraps net.ErrClosed.
func (t *Tunnel) Err() error {
	select {
	case <-t.done:
	default:
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// cause returns why the tunnel is ending, as soon as that is decided and
// perhaps before Done is closed.
func (t *Tunnel) cause() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Close ends the tunnel and every connection made through it. It waits until
// the SSH connection is closed and always returns nil.
func (t *Tunnel) Close() error {
	t.fail(fmt.Errorf("ssh tunnel: the tunnel was closed: %w", net.ErrClosed))
	<-t.done
	return nil
}
