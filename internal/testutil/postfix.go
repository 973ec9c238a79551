//go:build unix

package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// postfixBin is the postfix(1) command of Debian's postfix package.
const postfixBin = "/usr/sbin/postfix"

// postfixSkip is the message for tests that skip because Postfix is missing.
const postfixSkip = "postfix not installed: apt-get install postfix"

// postfixMaildir is the one maildir, under Dir, that gets the mail of
// every recipient at example.test.
const postfixMaildir = "mail/inbox"

// Postfix is a private Postfix instance for integration tests: two smtpd
// listeners on 127.0.0.1, one plain and one behind a PROXY protocol
// header, and everything (configuration, queue, data, log, mail) in Dir.
//
// It accepts mail for any recipient at example.test from any client and
// delivers it to one maildir (see Messages). Clients in 127.0.0.0/8 may
// also relay, but mail for any other domain bounces at once: nothing
// leaves the machine. 127.0.0.1 may send XCLIENT, so a proxy in front of
// it can pass on the real client; a client outside 127.0.0.0/8 (such as
// the address XCLIENT or a PROXY header sets) gets "Relay access denied"
// for other domains. Reverse DNS is off: a client without an XCLIENT
// NAME is logged as unknown[addr].
type Postfix struct {
	Addr      string // 127.0.0.1:port of its smtpd
	ProxyAddr string // a second smtpd with smtpd_upstream_proxy_protocol = haproxy
	Dir       string // the instance folder; the log is Dir/maillog
}

// StartPostfix starts a private Postfix and stops it when the test ends.
// It skips the test when Postfix is not installed or the test does not
// run as root (Postfix's master must), and fails it, with Postfix's log,
// when Postfix is installed but does not start. Every call makes its own
// instance (folder, queue and ports), so parallel tests do not share one,
// and none of them uses the system's Postfix.
func StartPostfix(t testing.TB) *Postfix {
	t.Helper()
	if _, err := os.Stat(postfixBin); err != nil {
		t.Skip(postfixSkip)
	}
	if os.Geteuid() != 0 {
		t.Skip("postfix needs root: the postfix command is reserved for the super-user")
	}

	// Our own folder rather than t.TempDir: the postfix user must be able
	// to enter it (t.TempDir's parent is 0700), and the unix sockets under
	// the queue need a short path.
	dir, err := os.MkdirTemp("", "postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Postfix{Dir: dir}
	cfg, err := p.setup()
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	// Registered before stop, so it runs after it, on the whole log.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix %s", p.logs())
		}
	})

	// The ports were free when we chose them; another process may take one
	// before the master binds it, so a bind failure gets fresh ports.
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Port, cfg.ProxyPort = ports[0], ports[1]
		p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		p.ProxyAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))

		stop, err := p.start(cfg)
		if err == nil {
			t.Cleanup(stop)
			return p
		}
		if attempt < 3 && p.LogContains("Address already in use") {
			t.Logf("postfix: port taken, retrying: %v", err)
			continue
		}
		t.Fatalf("postfix: %v", err) // the cleanup above shows the log
	}
}

// Messages returns the messages delivered so far, oldest first, each as
// Postfix wrote it: LF line ends, and Return-Path, X-Original-To,
// Delivered-To and Received added on top of what the client sent (and
// Date and Message-ID when the client sent none). Delivery follows the
// end of DATA by a few milliseconds, so poll it (WaitFor).
func (p *Postfix) Messages(t testing.TB) [][]byte {
	t.Helper()
	dir := filepath.Join(p.Dir, postfixMaildir, "new")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type file struct {
		name string
		mod  time.Time
	}
	var files []file
	for _, e := range entries {
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().IsRegular() {
			files = append(files, file{e.Name(), info.ModTime()})
		}
	}
	// A maildir name starts with the second of delivery; the modification
	// time orders messages within one second.
	slices.SortFunc(files, func(a, b file) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	msgs := make([][]byte, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	return msgs
}

// LogContains reports whether Postfix's log has s, for example the
// client=name[addr] that smtpd logs for each message it accepts. The log
// is written by a separate process, a moment after the event: poll it.
func (p *Postfix) LogContains(s string) bool {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return bytes.Contains(b, []byte(s))
}

// logs returns the postfix command's output and Postfix's log, for
// failure messages.
func (p *Postfix) logs() string {
	var b strings.Builder
	for _, name := range []string{"stderr.log", "maillog"} {
		data, _ := os.ReadFile(filepath.Join(p.Dir, name))
		fmt.Fprintf(&b, "--- %s\n%s", name, data)
	}
	return b.String()
}

// postfixConfig fills postfixMain and postfixMaster.
type postfixConfig struct {
	Dir, Maildir     string
	MailUID, MailGID int
	Port, ProxyPort  int
}

// setup makes the folders and writes main.cf.
func (p *Postfix) setup() (*postfixConfig, error) {
	// Postfix's daemons run as the package's postfix user, which owns the
	// queue and data folders. Mail belongs to nobody: virtual(8) delivers
	// as that user and refuses root.
	owner, err := user.Lookup("postfix")
	if err != nil {
		return nil, fmt.Errorf("user postfix (made by the postfix package): %w", err)
	}
	mail, err := user.Lookup("nobody")
	if err != nil {
		return nil, err
	}
	cfg := &postfixConfig{Dir: p.Dir, Maildir: postfixMaildir}
	ownerUID, _ := strconv.Atoi(owner.Uid)
	ownerGID, _ := strconv.Atoi(owner.Gid)
	cfg.MailUID, _ = strconv.Atoi(mail.Uid)
	cfg.MailGID, _ = strconv.Atoi(mail.Gid)

	for _, d := range []struct {
		path     string
		uid, gid int
		mode     fs.FileMode
	}{
		{"etc", 0, 0, 0o755},
		{"queue", 0, 0, 0o755},
		{"data", ownerUID, ownerGID, 0o700},
		{"mail", cfg.MailUID, cfg.MailGID, 0o755},
		{postfixMaildir, cfg.MailUID, cfg.MailGID, 0o755},
		{postfixMaildir + "/new", cfg.MailUID, cfg.MailGID, 0o755},
		{postfixMaildir + "/cur", cfg.MailUID, cfg.MailGID, 0o755},
		{postfixMaildir + "/tmp", cfg.MailUID, cfg.MailGID, 0o755},
	} {
		if err := mkdirOwned(filepath.Join(p.Dir, d.path), d.uid, d.gid, d.mode); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	if err := postfixMain.Execute(&b, cfg); err != nil {
		return nil, err
	}
	if err := writeOld(filepath.Join(p.Dir, "etc", "main.cf"), b.Bytes()); err != nil {
		return nil, err
	}
	return cfg, nil
}

// writeOld writes a configuration file with a modification time a minute
// ago. Postfix does not trust a file changed in the last second (it may
// be half written): it rereads it every 300ms until it is older, which
// would add two seconds to every start.
func writeOld(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	old := time.Now().Add(-time.Minute)
	return os.Chtimes(path, old, old)
}

// mkdirOwned makes a folder with an owner and a mode that the umask does
// not change.
func mkdirOwned(path string, uid, gid int, mode fs.FileMode) error {
	if err := os.Mkdir(path, mode); err != nil {
		return err
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// start writes master.cf (it has the ports), runs the master in the
// foreground and waits until it has bound its listeners and an smtpd
// greets. The returned func stops it.
func (p *Postfix) start(cfg *postfixConfig) (stop func(), err error) {
	var b bytes.Buffer
	if err := postfixMaster.Execute(&b, cfg); err != nil {
		return nil, err
	}
	if err := writeOld(filepath.Join(p.Dir, "etc", "master.cf"), b.Bytes()); err != nil {
		return nil, err
	}
	// The log starts empty on every attempt. What the postfix command
	// says before logging works goes to stderr: a file rather than a
	// pipe, so that Wait returns when the command exits whatever its
	// children hold.
	if err := os.Remove(filepath.Join(p.Dir, "maillog")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(p.Dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()

	// start-fg checks the configuration, makes the queue folders and runs
	// the master under a shell that waits for it: the command ends when
	// the master does. The master makes itself a session leader, so it
	// and its children are one process group of their own; the shell is
	// in ours.
	cmd := exec.Command(postfixBin, "-c", filepath.Join(p.Dir, "etc"), "start-fg")
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	// The master writes its pid (padded with spaces) before it binds the
	// listeners, and leaves the file when it exits.
	masterPID := func() int {
		data, _ := os.ReadFile(filepath.Join(p.Dir, "queue", "pid", "master.pid"))
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 1 {
			return 0
		}
		return pid
	}
	stop = func() {
		// SIGTERM to the master, as "postfix abort": it passes the signal
		// on to its daemons, which end at once rather than when they have
		// finished their work, and exits; the shell, which waits for it,
		// then exits too. The master is a process group of its own: it
		// and its daemons are not in the shell's.
		groups := []int{-cmd.Process.Pid}
		select {
		case <-exited: // the master has gone
		default:
			if master := masterPID(); master > 0 {
				syscall.Kill(master, syscall.SIGTERM)
				groups = append(groups, -master)
			} else {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			}
		}
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			for _, g := range groups {
				syscall.Kill(g, syscall.SIGKILL)
			}
			<-exited
		}
		// Anything of the groups still there after the master: gone.
		for _, g := range groups {
			syscall.Kill(g, syscall.SIGKILL)
		}
	}

	// The master binds every listener before it logs "daemon started" (a
	// port taken makes it log "fatal: bind ...: Address already in use"
	// and exit), so the line and a live master mean both ports are ours.
	deadline := time.Now().Add(10 * time.Second)
	for !p.LogContains(" daemon started -- ") {
		select {
		case <-exited:
			return nil, fmt.Errorf("%s start-fg exited during start-up: %v", postfixBin, waitErr)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("no \"daemon started\" in the log after 10s")
		}
	}
	// An smtpd greeting, so that a daemon that fails on its settings
	// fails here rather than in the test.
	if err := smtpGreets(p.Addr); err != nil {
		stop()
		return nil, fmt.Errorf("smtpd on %s: %w", p.Addr, err)
	}
	return stop, nil
}

// smtpGreets connects to addr, expects a 220 greeting and quits.
func smtpGreets(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if !bytes.HasPrefix(buf[:n], []byte("220 ")) {
		return fmt.Errorf("greeting %q, want 220 (%v)", buf[:n], err)
	}
	_, err = conn.Write([]byte("QUIT\r\n"))
	return err
}

// postfixMain is a complete main.cf (nothing from /etc/postfix) for
// Postfix 3.4 or later (maillog_file).
var postfixMain = template.Must(template.New("main.cf").Parse(`# Written by internal/testutil for one test run.
compatibility_level = 3.6
queue_directory = {{.Dir}}/queue
data_directory = {{.Dir}}/data
# The log is a file of ours (written by postlogd, see master.cf), not
# syslog.
maillog_file = {{.Dir}}/maillog
maillog_file_prefixes = {{.Dir}}

myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_authorized_xclient_hosts = 127.0.0.1
# No reverse DNS (there may be no DNS at all): clients are unknown[addr]
# unless XCLIENT sets a NAME.
smtpd_peername_lookup = no
smtp_dns_support_level = disabled

# Mail for example.test from anyone, relaying for 127.0.0.0/8 only. Postfix
# refuses a domain that is both in mydestination and a virtual mailbox
# domain, so example.test is only the latter.
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, permit_auth_destination, reject
mydestination = localhost
alias_maps =
alias_database =
local_recipient_maps =
biff = no

# Every recipient at example.test goes to one maildir under the instance
# folder, written as a user that is not root.
virtual_mailbox_domains = example.test
virtual_mailbox_base = {{.Dir}}
virtual_mailbox_maps = static:{{.Maildir}}/
virtual_uid_maps = static:{{.MailUID}}
virtual_gid_maps = static:{{.MailGID}}
virtual_minimum_uid = {{.MailUID}}

# Nothing leaves the machine: mail for any other domain bounces.
default_transport = error:5.7.1 no mail leaves a testutil instance
relay_transport = $default_transport
`))

// postfixMaster is master.cf: the two smtpd listeners and the daemons that
// take a message from smtpd to the maildir, none chrooted.
var postfixMaster = template.Must(template.New("master.cf").Parse(`# Written by internal/testutil for one test run.
# service          type       private unpriv chroot wakeup maxproc command
127.0.0.1:{{.Port}} inet      n       -      n      -      -       smtpd
127.0.0.1:{{.ProxyPort}} inet n       -      n      -      -       smtpd
  -o smtpd_upstream_proxy_protocol=haproxy
pickup             unix       n       -      n      60     1       pickup
cleanup            unix       n       -      n      -      0       cleanup
qmgr               unix       n       -      n      300    1       qmgr
rewrite            unix       -       -      n      -      -       trivial-rewrite
bounce             unix       -       -      n      -      0       bounce
defer              unix       -       -      n      -      0       bounce
trace              unix       -       -      n      -      0       bounce
verify             unix       -       -      n      -      1       verify
flush              unix       n       -      n      1000?  0       flush
proxymap           unix       -       -      n      -      -       proxymap
showq              unix       n       -      n      -      -       showq
error              unix       -       -      n      -      -       error
retry              unix       -       -      n      -      -       error
discard            unix       -       -      n      -      -       discard
local              unix       -       n      n      -      -       local
virtual            unix       -       n      n      -      -       virtual
anvil              unix       -       -      n      -      1       anvil
scache             unix       -       -      n      -      1       scache
postlog            unix-dgram n       -      n      -      1       postlogd
`))
