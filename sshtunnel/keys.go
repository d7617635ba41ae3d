package sshtunnel

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

const (
	privateKeyField = "networkTunnel.sshForwarding.privateKey"
	hostKeyField    = "networkTunnel.sshForwarding.hostKey"
	acceptedFormats = `an unencrypted PEM private key: "BEGIN OPENSSH PRIVATE KEY", ` +
		`"BEGIN RSA PRIVATE KEY" (PKCS#1), "BEGIN EC PRIVATE KEY" or "BEGIN PRIVATE KEY" (PKCS#8), ` +
		`holding an Ed25519, ECDSA or RSA key`
)

// ParsePrivateKey parses the private key that authenticates the SSH user, as
// Open does. Configuration validation calls it too, so that a key passes
// validation exactly when the tunnel can use it. Its errors name the
// configuration field (networkTunnel.sshForwarding.privateKey), say how to
// fix the key, and never quote any of it.
func ParsePrivateKey(text string) (ssh.Signer, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("%q is required for an SSH tunnel: paste the private key that authenticates the SSH user, %s",
			privateKeyField, acceptedFormats)
	}
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return nil, fmt.Errorf("%q is not a valid SSH private key in PEM or OpenSSH format: %s; paste %s, "+
			"including its BEGIN and END lines and its line breaks", privateKeyField, describeNonPEM(text), acceptedFormats)
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, passphraseError()
	}
	signer, err := ssh.ParsePrivateKey(pem.EncodeToMemory(block))
	if err != nil {
		if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
			return nil, passphraseError()
		}
		return nil, fmt.Errorf("%q is not a valid SSH private key in PEM or OpenSSH format: its %q block cannot be parsed (%w); paste %s",
			privateKeyField, block.Type, err, acceptedFormats)
	}
	if signer.PublicKey().Type() == ssh.InsecureKeyAlgoDSA { //nolint:staticcheck // named to be refused
		return nil, fmt.Errorf("%q is a DSA key, which current SSH servers refuse: generate an Ed25519 key "+
			"(ssh-keygen -t ed25519), authorize it on the SSH server and paste its private key", privateKeyField)
	}
	return signer, nil
}

// describeNonPEM guesses what a user pasted instead of a PEM private key.
func describeNonPEM(text string) string {
	switch {
	case strings.HasPrefix(text, "ssh-"), strings.HasPrefix(text, "ecdsa-"):
		return "it looks like a public key, but the private key is needed"
	case strings.HasPrefix(text, "PuTTY-User-Key-File"):
		return "it is a PuTTY key; export it with PuTTYgen's \"Export OpenSSH key\""
	case strings.Contains(text, `\n`):
		return `it contains literal \n sequences where line breaks belong`
	case strings.Contains(text, "-----BEGIN"):
		return "its BEGIN and END lines or line breaks are damaged"
	default:
		return "no BEGIN line was found"
	}
}

func passphraseError() error {
	return fmt.Errorf("%q is protected by a passphrase, which is not supported: "+
		`remove the passphrase with ssh-keygen -p -N "" -f <key file> and paste the result`, privateKeyField)
}

// ParseHostKeys parses the pinned host keys of the SSH server, as Open does;
// configuration validation calls it too. The text holds one or more public
// keys in authorized_keys format, one per line; ssh-keyscan and known_hosts
// lines also work, their host name field reading as authorized_keys
// options. Blank text pins no key, and returns none.
func ParseHostKeys(text string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	rest := []byte(text)
	for len(bytes.TrimSpace(rest)) > 0 {
		key, _, _, next, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("%q is not a public key as written in known_hosts or authorized_keys (%w): "+
				`paste the SSH server's host key, such as "ssh-ed25519 AAAA...", `+
				"the contents of /etc/ssh/ssh_host_ed25519_key.pub on the server, or leave it empty", hostKeyField, err)
		}
		keys = append(keys, key)
		rest = next
	}
	return keys, nil
}

// hostKeyVerifier checks the SSH server's host key. With no pinned key it
// trusts the first key it sees (warning about it), and from then on insists on
// that key, so a re-key within the session cannot switch servers.
type hostKeyVerifier struct {
	logger logrus.FieldLogger

	mu       sync.Mutex
	pinned   []ssh.PublicKey
	verified bool // a key was accepted, so the handshake got past key exchange
}

// algorithms returns the host key algorithms to offer, so that the server
// presents a key of a pinned type rather than whichever type it prefers. Nil
// leaves the library's default.
func (v *hostKeyVerifier) algorithms() []string {
	var algos []string
	for _, key := range v.pinned {
		switch key.Type() {
		case ssh.KeyAlgoRSA:
			// An RSA key signs with SHA-2 algorithms whose names differ from
			// the key type's.
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, key.Type())
		}
	}
	return algos
}

// check is an ssh.HostKeyCallback.
func (v *hostKeyVerifier) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pinned == nil {
		v.logger.WithFields(logrus.Fields{
			"sshServer":          hostname,
			"hostKeyFingerprint": ssh.FingerprintSHA256(key),
			"hostKey":            authorizedKey(key),
		}).Warn("ssh tunnel: the SSH server's host key is not pinned, so the server's identity is not verified; " +
			"compare hostKeyFingerprint with the output of ssh-keygen -lf on the server's host key, " +
			"then pin it by setting " + hostKeyField + " to the logged hostKey")
		v.pinned = []ssh.PublicKey{key}
		v.verified = true
		return nil
	}
	marshaled := key.Marshal()
	for _, pinned := range v.pinned {
		if bytes.Equal(marshaled, pinned.Marshal()) {
			v.verified = true
			return nil
		}
	}
	return &hostKeyMismatchError{server: hostname, got: key, want: v.pinned}
}

// passedKeyExchange reports whether the handshake got as far as accepting the
// server's host key, after which only user authentication remains.
func (v *hostKeyVerifier) passedKeyExchange() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.verified
}

type hostKeyMismatchError struct {
	server string
	got    ssh.PublicKey
	want   []ssh.PublicKey
}

func (e *hostKeyMismatchError) Error() string {
	want := make([]string, len(e.want))
	for i, key := range e.want {
		want[i] = key.Type() + " " + ssh.FingerprintSHA256(key)
	}
	return fmt.Sprintf("host key mismatch: SSH server %s presented the %s host key %s, but the pinned host key is %s; "+
		"if the server's host key was changed on purpose, set %s to the new one, otherwise the connection may be intercepted",
		e.server, e.got.Type(), ssh.FingerprintSHA256(e.got), strings.Join(want, " or "), hostKeyField)
}

// authorizedKey formats key as a single authorized_keys line.
func authorizedKey(key ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n")
}
