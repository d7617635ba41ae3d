// Command gosshd is the SSH server the tests run where OpenSSH's sshd is not
// installed. It does what a bastion host does for the connector and nothing
// more: public-key authentication of one user against an authorized_keys
// file, host keys read from files, and direct-tcpip channels (what "ssh -L"
// and the connector's tunnel open) to any TCP address. Global requests such
// as keepalive@openssh.com are answered with a failure, as OpenSSH answers
// requests it does not know; session channels are refused.
//
// testsupport builds it under the name sshd and runs it as it runs OpenSSH,
// as a process of its own, so that stopping, freezing or killing the server
// affects the connections it serves just the same.
//
//	gosshd -listen 127.0.0.1:2222 -user root -authorized-keys FILE -host-key FILE [-host-key FILE]
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// Like OpenSSH's LoginGraceTime: a client that has not logged in by
	// then is dropped.
	loginGraceTime = 2 * time.Minute
	dialTimeout    = 30 * time.Second
)

type hostKeyFiles []string

func (h *hostKeyFiles) String() string     { return strings.Join(*h, ",") }
func (h *hostKeyFiles) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	listen := flag.String("listen", "127.0.0.1:22", "address to listen on")
	user := flag.String("user", "", "the one user who may log in")
	authorizedKeys := flag.String("authorized-keys", "", "authorized_keys file of the user")
	var hostKeys hostKeyFiles
	flag.Var(&hostKeys, "host-key", "private host key file (repeatable)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	// run serves until it fails: it returns only with an error.
	err := run(*listen, *user, *authorizedKeys, hostKeys)
	log.Print("gosshd: ", err)
	os.Exit(1)
}

func run(listen, user, authorizedKeysPath string, hostKeyPaths []string) error {
	if user == "" || authorizedKeysPath == "" || len(hostKeyPaths) == 0 {
		return errors.New("-user, -authorized-keys and at least one -host-key are required")
	}
	authorized, err := readAuthorizedKeys(authorizedKeysPath)
	if err != nil {
		return err
	}
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if conn.User() != user {
				return nil, fmt.Errorf("invalid user %s", conn.User())
			}
			if !authorized[string(key.Marshal())] {
				return nil, fmt.Errorf("key %s %s is not in %s", key.Type(), ssh.FingerprintSHA256(key), authorizedKeysPath)
			}
			return &ssh.Permissions{Extensions: map[string]string{"key": key.Type() + " " + ssh.FingerprintSHA256(key)}}, nil
		},
		AuthLogCallback: func(conn ssh.ConnMetadata, method string, err error) {
			if method == "none" {
				return // every client asks first which methods there are
			}
			if err != nil {
				log.Printf("Failed %s for %s from %s: %v", method, conn.User(), conn.RemoteAddr(), err)
			}
		},
	}
	for _, path := range hostKeyPaths {
		pem, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading host key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return fmt.Errorf("parsing host key %s: %w", path, err)
		}
		config.AddHostKey(signer)
	}

	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	log.Printf("Server listening on %s.", l.Addr())
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		go serve(conn, config)
	}
}

// readAuthorizedKeys returns the keys of an authorized_keys file, indexed by
// their wire form.
func readAuthorizedKeys(path string) (map[string]bool, error) {
	rest, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for len(bytes.TrimSpace(rest)) > 0 {
		var key ssh.PublicKey
		key, _, _, rest, err = ssh.ParseAuthorizedKey(rest)
		if err != nil {
			if len(keys) > 0 && strings.Contains(err.Error(), "no key found") {
				break // only comments are left
			}
			return nil, fmt.Errorf("parsing %s: %w", path, err)
		}
		keys[string(key.Marshal())] = true
	}
	return keys, nil
}

// serve runs one client connection: the handshake, then its channels until
// it ends.
func serve(conn net.Conn, config *ssh.ServerConfig) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(loginGraceTime)) //nolint:errcheck // a connection whose deadline cannot be set fails its handshake anyway
	sconn, channels, requests, err := ssh.NewServerConn(conn, config)
	if err != nil {
		log.Printf("Connection from %s closed during login: %v", conn.RemoteAddr(), err)
		return
	}
	conn.SetDeadline(time.Time{}) //nolint:errcheck // a connection whose deadline cannot be set fails its handshake anyway
	log.Printf("Accepted publickey for %s from %s %s", sconn.User(), conn.RemoteAddr(), sconn.Permissions.Extensions["key"])

	// Forwarded connections end with the SSH connection.
	ended := make(chan struct{})
	go func() {
		sconn.Wait() //nolint:errcheck // the connection has ended either way
		close(ended)
	}()
	go ssh.DiscardRequests(requests)
	var forwards sync.WaitGroup
	for nc := range channels {
		if nc.ChannelType() != "direct-tcpip" {
			nc.Reject(ssh.UnknownChannelType, "only direct-tcpip channels are served") //nolint:errcheck // a refused channel; the client sees the refusal or the closed connection
			continue
		}
		forwards.Go(func() { forward(nc, ended) })
	}
	forwards.Wait()
	log.Printf("Disconnected from user %s %s", sconn.User(), conn.RemoteAddr())
}

// directTCPIP is the payload of a direct-tcpip channel request (RFC 4254,
// section 7.2).
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// forward connects a direct-tcpip channel to its destination and copies
// both ways, passing on half-closes, until both directions are done or the
// SSH connection ends.
func forward(nc ssh.NewChannel, ended <-chan struct{}) {
	var req directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request") //nolint:errcheck // a refused channel; the client sees the refusal or the closed connection
		return
	}
	addr := net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port)))
	target, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		log.Printf("direct-tcpip to %s failed: %v", addr, err)
		nc.Reject(ssh.ConnectionFailed, err.Error()) //nolint:errcheck // a refused channel; the client sees the refusal or the closed connection
		return
	}
	defer target.Close()
	ch, requests, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(requests)

	done := make(chan struct{}, 2)
	go func() {
		io.Copy(target, ch)                //nolint:errcheck // a forward ends when either side closes; nothing to report
		target.(*net.TCPConn).CloseWrite() //nolint:errcheck // half-close after the copy; the connection is closing anyway
		done <- struct{}{}
	}()
	go func() {
		io.Copy(ch, target) //nolint:errcheck // a forward ends when either side closes; nothing to report
		ch.CloseWrite()     //nolint:errcheck // half-close after the copy; the connection is closing anyway
		done <- struct{}{}
	}()
	for range 2 {
		select {
		case <-done:
		case <-ended:
			return // the deferred closes end both copies
		}
	}
}
