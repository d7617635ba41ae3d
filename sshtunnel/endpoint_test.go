package sshtunnel_test

import (
	"strings"
	"testing"

	"pgcapture/sshtunnel"
)

func TestParseEndpoint(t *testing.T) {
	valid := []struct {
		endpoint, user, addr string
	}{
		{"ssh://flow@bastion.example.com", "flow", "bastion.example.com:22"},
		{"ssh://flow@10.0.0.1:2222", "flow", "10.0.0.1:2222"},
		{"SSH://flow@bastion:22/", "flow", "bastion:22"},
		{"  ssh://flow@bastion\n", "flow", "bastion:22"},
		{"ssh://me@example.com@bastion", "me@example.com", "bastion:22"},
		{"ssh://flow@[2001:db8::1]:2222", "flow", "[2001:db8::1]:2222"},
		{"ssh://flow@[::1]", "flow", "[::1]:22"},
		{"ssh://flow@my_host-1.internal:65535", "flow", "my_host-1.internal:65535"},
	}
	for _, tt := range valid {
		user, addr, err := sshtunnel.ParseEndpoint(tt.endpoint)
		if err != nil || user != tt.user || addr != tt.addr {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v; want %q, %q", tt.endpoint, user, addr, err, tt.user, tt.addr)
		}
	}

	invalid := []struct {
		endpoint, problem string
	}{
		{"", "must start with ssh://"},
		{"bastion:22", "must start with ssh://"},
		{"postgres://flow@bastion", "must start with ssh://"},
		{"ssh://bastion", "user name is missing"},
		{"ssh://@bastion", "user name before @ is empty"},
		{"ssh://flow:hunter2@bastion", "must not contain a password"},
		{"ssh://fl ow@bastion", "contains a space or slash"},
		{"ssh://flow@", "host is missing"},
		{"ssh://flow@:22", "host is missing"},
		{"ssh://flow@bastion:0", `port "0"`},
		{"ssh://flow@bastion:65536", `port "65536"`},
		{"ssh://flow@bastion:ssh", `port "ssh"`},
		{"ssh://flow@bastion:", `port ""`},
		{"ssh://flow@2001:db8::1", "must be written in brackets"},
		{"ssh://flow@[2001:db8::1", "lacks its closing ]"},
		{"ssh://flow@[10.0.0.1]:22", "is not an IPv6 address"},
		{"ssh://flow@[::1]22", "unexpected"},
		{"ssh://flow@bastion/path", `invalid character '/'`},
		{"ssh://flow@bastion?x=1", `invalid character '?'`},
	}
	for _, tt := range invalid {
		_, _, err := sshtunnel.ParseEndpoint(tt.endpoint)
		if err == nil {
			t.Errorf("ParseEndpoint(%q) succeeded, want an error saying %q", tt.endpoint, tt.problem)
			continue
		}
		msg := err.Error()
		for _, want := range []string{tt.problem, "networkTunnel.sshForwarding.sshEndpoint", "ssh://user@host[:port]"} {
			if !strings.Contains(msg, want) {
				t.Errorf("ParseEndpoint(%q) error %q does not contain %q", tt.endpoint, msg, want)
			}
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("ParseEndpoint(%q) error reveals the password: %q", tt.endpoint, msg)
		}
	}
}
