//go:build unix

package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
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

	*daemon
}

// StartPostfix starts a private Postfix and stops it when the test ends.
// It skips the test when Postfix is not installed or the test does not
// run as root (Postfix's master must), and fails it, with Postfix's log,
// when Postfix is installed but does not start. Every call makes its own
// instance (folder, queue and ports), so parallel tests do not share one,
// and none of them uses the system's Postfix.
func StartPostfix(t testing.TB) *Postfix {
	t.Helper()
	return startPostfix(t, "")
}

// StartPostfixSASL starts a private Postfix, as StartPostfix does, that
// also offers AUTH (PLAIN, LOGIN, CRAM-MD5) and checks the credentials
// with auth, whose User and Password log in. It takes mail without AUTH
// all the same.
func StartPostfixSASL(t testing.TB, auth *Dovecot) *Postfix {
	t.Helper()
	return startPostfix(t, auth.AuthSocket)
}

// startPostfix starts a Postfix with SASL through the Dovecot socket at
// saslPath, or without SASL when it is "".
func startPostfix(t testing.TB, saslPath string) *Postfix {
	t.Helper()
	if _, err := os.Stat(postfixBin); err != nil {
		t.Skip(postfixSkip)
	}
	if os.Geteuid() != 0 {
		t.Skip("postfix needs root: the postfix command is reserved for the super-user")
	}

	dmn := newDaemon(t, "postfix", "maillog")
	p := &Postfix{Dir: dmn.dir, daemon: dmn}
	cfg, err := p.setup(saslPath)
	if err != nil {
		t.Fatalf("postfix: %v", err)
	}
	dmn.startOnFreePorts(t, 2, func(ports []int) (stop func(), err error) {
		cfg.Port, cfg.ProxyPort = ports[0], ports[1]
		p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		p.ProxyAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		return p.start(cfg)
	})
	return p
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
func (p *Postfix) LogContains(s string) bool { return p.logContains(s) }

// postfixConfig fills postfixMain and postfixMaster.
type postfixConfig struct {
	Dir, Maildir     string
	MailUID, MailGID int
	Port, ProxyPort  int
	SASLPath         string // a Dovecot auth socket, or "" for no AUTH
}

// setup makes the folders and writes main.cf.
func (p *Postfix) setup(saslPath string) (*postfixConfig, error) {
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
	cfg := &postfixConfig{Dir: p.Dir, Maildir: postfixMaildir, SASLPath: saslPath}
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
	if err := writeTemplate(filepath.Join(p.Dir, "etc", "main.cf"), postfixMain, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
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
	if err := writeTemplate(filepath.Join(p.Dir, "etc", "master.cf"), postfixMaster, cfg); err != nil {
		return nil, err
	}
	// start-fg checks the configuration, makes the queue folders and runs
	// the master under a shell that waits for it: the command ends when
	// the master does. The master makes itself a session leader, so it
	// and its children are one process group of their own; the shell is
	// in ours.
	pr, err := p.run(postfixBin, "-c", filepath.Join(p.Dir, "etc"), "start-fg")
	if err != nil {
		return nil, err
	}
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
		pr.stop(2*time.Second, func() []int {
			if master := masterPID(); master > 0 {
				syscall.Kill(master, syscall.SIGTERM)
				return []int{master}
			}
			syscall.Kill(-pr.cmd.Process.Pid, syscall.SIGTERM)
			return nil
		})
	}

	// The master binds every listener before it logs "daemon started" (a
	// port taken makes it log "fatal: bind ...: Address already in use"
	// and exit), so the line and a live master mean both ports are ours.
	if err := p.waitForLog(pr, " daemon started -- "); err != nil {
		stop()
		return nil, err
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
{{- if .SASLPath}}

# AUTH, checked by a testutil Dovecot; without TLS, so plain text is fine.
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {{.SASLPath}}
{{- end}}
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
