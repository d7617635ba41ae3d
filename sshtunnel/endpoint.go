package sshtunnel

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	endpointField = "networkTunnel.sshForwarding.sshEndpoint"
	endpointForm  = "ssh://user@host[:port], e.g. ssh://flow@bastion.example.com:22"
	defaultPort   = "22"
)

// ParseEndpoint splits an SSH endpoint of the form ssh://user@host[:port] into
// the user to log in as and the host:port address to dial. The port defaults
// to 22, and an IPv6 host is written in brackets: ssh://user@[2001:db8::1]:2222.
func ParseEndpoint(s string) (user, addr string, err error) {
	s = strings.TrimSpace(s)
	const scheme = "ssh://"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return "", "", endpointError(s, "it must start with ssh://")
	}
	rest := strings.TrimSuffix(s[len(scheme):], "/")

	// The last @ separates the user from the host, so that user names that
	// are e-mail addresses (as some bastion services use) still work.
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return "", "", endpointError(s, "the user name is missing")
	}
	user, hostport := rest[:at], rest[at+1:]
	switch {
	case user == "":
		return "", "", endpointError(s, "the user name before @ is empty")
	case strings.ContainsRune(user, ':'):
		// Don't echo the endpoint: the part after the colon is a password.
		return "", "", endpointError("", "it must not contain a password; the tunnel authenticates with networkTunnel.sshForwarding.privateKey")
	case strings.ContainsAny(user, " \t\r\n/"):
		return "", "", endpointError(s, fmt.Sprintf("the user name %q contains a space or slash", user))
	}

	host, port, err := splitHostPort(hostport)
	if err != nil {
		return "", "", endpointError(s, err.Error())
	}
	return user, net.JoinHostPort(host, port), nil
}

// splitHostPort is stricter than net.SplitHostPort: the port is optional, and
// a bare IPv6 address is refused because its last group would be ambiguous
// with a port.
func splitHostPort(hostport string) (host, port string, err error) {
	port = defaultPort
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", "", fmt.Errorf("the IPv6 host %q lacks its closing ]", hostport)
		}
		host = hostport[1:end]
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return "", "", fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		switch after := hostport[end+1:]; {
		case after == "":
		case strings.HasPrefix(after, ":"):
			port = after[1:]
		default:
			return "", "", fmt.Errorf("unexpected %q after the IPv6 host", after)
		}
	} else {
		host = hostport
		if i := strings.IndexByte(hostport, ':'); i >= 0 {
			host, port = hostport[:i], hostport[i+1:]
			if strings.ContainsRune(port, ':') {
				return "", "", fmt.Errorf("%q looks like an IPv6 address, which must be written in brackets", hostport)
			}
		}
		if host == "" {
			return "", "", fmt.Errorf("the host is missing")
		}
		if i := strings.IndexFunc(host, isInvalidHostRune); i >= 0 {
			r, _ := utf8.DecodeRuneInString(host[i:])
			return "", "", fmt.Errorf("the host %q contains the invalid character %q", host, r)
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", fmt.Errorf("the port %q is not a number from 1 to 65535", port)
	}
	return host, port, nil
}

// isInvalidHostRune reports whether r cannot appear in a DNS name or IPv4
// address.
func isInvalidHostRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	case r == '.', r == '-', r == '_':
		return false
	}
	return true
}

// endpointError describes an invalid endpoint. value is quoted in the message
// unless empty.
func endpointError(value, problem string) error {
	if value == "" {
		return fmt.Errorf("invalid %s: %s; expected %s", endpointField, problem, endpointForm)
	}
	return fmt.Errorf("invalid %s %q: %s; expected %s", endpointField, value, problem, endpointForm)
}
