package testsupport

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// SSHDPath is where the OpenSSH server is expected, as Debian's
	// openssh-server package installs it. sshd insists on an absolute path.
	SSHDPath = "/usr/sbin/sshd"

	sshdStartTimeout = 10 * time.Second
	// sshdPrivsepDir is the privilege-separation directory that sshd
	// requires when started as root.
	sshdPrivsepDir = "/run/sshd"
)

// sshServer is an SSH server program that StartSSHD runs.
type sshServer string

const (
	// openSSH is OpenSSH's sshd at SSHDPath.
	openSSH sshServer = "OpenSSH"
	// goSSHD is testsupport/gosshd, built from this module, for machines
	// without OpenSSH.
	goSSHD sshServer = "gosshd"
)

// installedSSHServer returns OpenSSH if it is installed, else gosshd.
func installedSSHServer() sshServer {
	if info, err := os.Stat(SSHDPath); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
		return openSSH
	}
	return goSSHD
}

// SSHD is a real SSH server for tests, listening on 127.0.0.1 with its own
// host keys, in a process of its own: OpenSSH's sshd where it is installed
// (SSHDPath), else testsupport/gosshd. It accepts public-key logins by the
// current user (root when tests run as root) and allows TCP forwarding.
type SSHD struct {
	server  sshServer
	user    string
	port    int
	hostKey string // authorized_keys line of the Ed25519 host key
	dir     string

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the listener process has exited
	stopOnce sync.Once
}

// StartSSHD starts an SSH server that accepts the given authorized_keys
// lines. It is stopped when the test ends, and its log is shown if the test
// failed.
func StartSSHD(t testing.TB, authorizedKeys ...string) *SSHD {
	t.Helper()
	return startSSHDFor(t, installedSSHServer(), authorizedKeys)
}

func startSSHDFor(t testing.TB, server sshServer, authorizedKeys []string) *SSHD {
	t.Helper()
	s, err := startSSHD(server, t.TempDir(), authorizedKeys)
	if err != nil {
		t.Fatalf("starting the SSH server (%s): %v", server, err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", s.server, s.logPath(), s.log())
		}
	})
	return s
}

// Endpoint returns the server as an SSH endpoint, "ssh://USER@127.0.0.1:PORT".
func (s *SSHD) Endpoint() string {
	return fmt.Sprintf("ssh://%s@127.0.0.1:%d", s.user, s.port)
}

// HostKey returns the server's Ed25519 public host key in authorized_keys
// format. The server also has an RSA host key, which clients that don't ask
// for Ed25519 are offered first.
func (s *SSHD) HostKey() string { return s.hostKey }

// Suspend freezes the server and its per-connection processes with SIGSTOP,
// leaving their connections open: to clients it is a server that went
// silent, as when a network path dies without a reset. Stop ends it.
func (s *SSHD) Suspend() {
	for _, pid := range sshdProcesses(s.cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
}

// Stop kills the server and every connection it serves, so that clients see
// their connections drop. It may be called more than once.
func (s *SSHD) Stop() {
	s.stopOnce.Do(func() {
		pid := s.cmd.Process.Pid
		// Freeze the listener first so it forks no new connection handlers
		// while they are being found.
		syscall.Kill(pid, syscall.SIGSTOP)
		// Each of OpenSSH's connection handlers runs in its own session (sshd
		// calls setsid), so killing the listener's process group would miss
		// them.
		for _, p := range sshdProcesses(pid) {
			syscall.Kill(-p, syscall.SIGKILL)
			syscall.Kill(p, syscall.SIGKILL)
		}
		<-s.exited
	})
}

func startSSHD(server sshServer, dir string, authorizedKeys []string) (*SSHD, error) {
	s := &SSHD{server: server, dir: dir, exited: make(chan struct{})}
	if os.Geteuid() == 0 {
		s.user = "root"
	} else {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("looking up the current user: %w", err)
		}
		s.user = u.Username
	}

	ed25519Key, err := writeSSHDHostKey(filepath.Join(dir, "ssh_host_ed25519_key"), "ed25519")
	if err != nil {
		return nil, err
	}
	s.hostKey = ed25519Key
	if _, err := writeSSHDHostKey(filepath.Join(dir, "ssh_host_rsa_key"), "rsa"); err != nil {
		return nil, err
	}
	authorized := strings.Join(authorizedKeys, "\n") + "\n"
	if err := os.WriteFile(s.authorizedKeysPath(), []byte(authorized), 0o600); err != nil {
		return nil, fmt.Errorf("writing authorized_keys: %w", err)
	}

	// The port could be taken between this check and the server binding
	// it; then the server exits and the error says so.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("finding a free port: %w", err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close() //nolint:errcheck // only its free port is wanted, for sshd

	switch server {
	case openSSH:
		err = s.prepareOpenSSH()
	case goSSHD:
		err = s.prepareGoSSHD()
	default:
		err = fmt.Errorf("unknown SSH server %q", server)
	}
	if err != nil {
		return nil, err
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", s.cmd.Path, err)
	}
	go func() {
		s.cmd.Wait() //nolint:errcheck // sshd is stopped by a signal; its log says why it exited
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// prepareOpenSSH writes an sshd_config and prepares to run OpenSSH's sshd.
func (s *SSHD) prepareOpenSSH() error {
	if os.Geteuid() == 0 {
		if err := os.MkdirAll(sshdPrivsepDir, 0o755); err != nil {
			return fmt.Errorf("creating the privilege separation directory: %w", err)
		}
	}
	configPath := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(configPath, []byte(s.openSSHConfig()), 0o600); err != nil {
		return fmt.Errorf("writing sshd_config: %w", err)
	}
	// -D keeps sshd in the foreground so that it is our child; -E sends its
	// log to a file instead of syslog.
	s.cmd = exec.Command(SSHDPath, "-D", "-f", configPath, "-E", s.logPath())
	return nil
}

func (s *SSHD) openSSHConfig() string {
	lines := []string{
		"ListenAddress 127.0.0.1:" + strconv.Itoa(s.port),
		"HostKey " + filepath.Join(s.dir, "ssh_host_ed25519_key"),
		"HostKey " + filepath.Join(s.dir, "ssh_host_rsa_key"),
		"PidFile " + filepath.Join(s.dir, "sshd.pid"),
		"AuthorizedKeysFile " + s.authorizedKeysPath(),
		"AuthenticationMethods publickey",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"AllowTcpForwarding yes",
		// The files live in a temporary directory under the world-writable
		// /tmp, which strict modes would refuse.
		"StrictModes no",
		// Without PAM, sshd refuses accounts whose password is locked ("!" in
		// /etc/shadow), as root's and CI users' often are; PAM's account
		// check does not mind, and no password is ever asked for.
		"UsePAM yes",
		"UseDNS no",
		"PrintMotd no",
		"LogLevel VERBOSE",
	}
	return strings.Join(lines, "\n") + "\n"
}

// prepareGoSSHD builds gosshd (once per test binary) and prepares to run it
// with the same keys, logging to the same file as OpenSSH would.
func (s *SSHD) prepareGoSSHD() error {
	path, err := goSSHDProgram.build()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the server has its own descriptor
	s.cmd = exec.Command(path,
		"-listen", "127.0.0.1:"+strconv.Itoa(s.port),
		"-user", s.user,
		"-authorized-keys", s.authorizedKeysPath(),
		"-host-key", filepath.Join(s.dir, "ssh_host_ed25519_key"),
		"-host-key", filepath.Join(s.dir, "ssh_host_rsa_key"),
	)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	return nil
}

func (s *SSHD) authorizedKeysPath() string { return filepath.Join(s.dir, "authorized_keys") }

// waitReady polls until the server greets a connection with its SSH banner.
func (s *SSHD) waitReady() error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(sshdStartTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited during startup (%v); its log:\n%s", s.server, s.cmd.ProcessState, s.log())
		default:
		}
		if sshdGreets(addr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections on %s within %s; its log:\n%s", s.server, addr, sshdStartTimeout, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sshdGreets(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second)) //nolint:errcheck // cannot fail on a fresh TCP connection
	banner, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(banner, "SSH-2.0-")
}

func (s *SSHD) logPath() string { return filepath.Join(s.dir, "sshd.log") }

func (s *SSHD) log() string {
	data, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(data)
}

// sshdProcesses returns pid and all its descendants, found through /proc.
func sshdProcesses(pid int) []int {
	children := make(map[int][]int)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if parent, ok := sshdParentPID(child); ok {
			children[parent] = append(children[parent], child)
		}
	}
	all := []int{pid}
	for i := 0; i < len(all); i++ {
		all = append(all, children[all[i]]...)
	}
	return all
}

// sshdParentPID reads a process's parent from /proc/PID/stat, whose second field,
// the command name in parentheses, may itself hold spaces and parentheses.
func sshdParentPID(pid int) (int, bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	_, rest, ok := strings.Cut(string(stat[bytes.LastIndexByte(stat, ')')+1:]), " ")
	if !ok {
		return 0, false
	}
	fields := strings.Fields(rest) // state, ppid, ...
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}

// writeSSHDHostKey generates a host key of the given kind ("ed25519" or
// "rsa"), writes it where sshd will read it, and returns its public key as an
// authorized_keys line.
func writeSSHDHostKey(path, kind string) (string, error) {
	var key crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return "", fmt.Errorf("unknown host key kind %q", kind)
	}
	if err != nil {
		return "", fmt.Errorf("generating the %s host key: %w", kind, err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return "", fmt.Errorf("encoding the %s host key: %w", kind, err)
	}
	// sshd ignores a host key that others can read.
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", fmt.Errorf("writing the %s host key: %w", kind, err)
	}
	return sshAuthorizedKeyLine(key.Public())
}

// SSHKeyKinds lists the kinds of key GenerateKey makes.
func SSHKeyKinds() []string {
	return []string{
		"rsa-pem", "rsa-pkcs8", "rsa-openssh",
		"ed25519-openssh", "ed25519-pkcs8",
		"ecdsa-pem", "ecdsa-pkcs8", "ecdsa-openssh",
	}
}

// GenerateKey makes an unencrypted SSH client key and returns it PEM-encoded,
// along with its public key as an authorized_keys line. kind is the key type
// and its encoding:
//
//	rsa-pem          RSA, PKCS#1 "BEGIN RSA PRIVATE KEY"
//	rsa-pkcs8        RSA, PKCS#8 "BEGIN PRIVATE KEY"
//	rsa-openssh      RSA, "BEGIN OPENSSH PRIVATE KEY"
//	ed25519-openssh  Ed25519, "BEGIN OPENSSH PRIVATE KEY"
//	ed25519-pkcs8    Ed25519, PKCS#8 "BEGIN PRIVATE KEY"
//	ecdsa-pem        ECDSA P-256, SEC 1 "BEGIN EC PRIVATE KEY"
//	ecdsa-pkcs8      ECDSA P-256, PKCS#8 "BEGIN PRIVATE KEY"
//	ecdsa-openssh    ECDSA P-256, "BEGIN OPENSSH PRIVATE KEY"
func GenerateKey(t testing.TB, kind string) (privatePEM, authorizedKey string) {
	t.Helper()
	algorithm, encoding, _ := strings.Cut(kind, "-")
	var key crypto.Signer
	var err error
	switch algorithm {
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if key == nil && err == nil {
		t.Fatalf("GenerateKey: unknown key kind %q; use one of %s", kind, strings.Join(SSHKeyKinds(), ", "))
	}
	if err != nil {
		t.Fatalf("GenerateKey: generating a %s key: %v", algorithm, err)
	}

	var block *pem.Block
	switch {
	case encoding == "openssh":
		block, err = ssh.MarshalPrivateKey(key, "")
	case encoding == "pkcs8":
		var der []byte
		der, err = x509.MarshalPKCS8PrivateKey(key)
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	case kind == "rsa-pem":
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	case kind == "ecdsa-pem":
		var der []byte
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		t.Fatalf("GenerateKey: unknown key kind %q; use one of %s", kind, strings.Join(SSHKeyKinds(), ", "))
	}
	if err != nil {
		t.Fatalf("GenerateKey: encoding a %s key: %v", kind, err)
	}
	authorizedKey, err = sshAuthorizedKeyLine(key.Public())
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return string(pem.EncodeToMemory(block)), authorizedKey
}

func sshAuthorizedKeyLine(public crypto.PublicKey) (string, error) {
	key, err := ssh.NewPublicKey(public)
	if err != nil {
		return "", fmt.Errorf("converting a public key to SSH form: %w", err)
	}
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n"), nil
}
