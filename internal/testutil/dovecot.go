//go:build unix

package testutil

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// dovecotBin is where Debian's dovecot-core installs the master process.
const dovecotBin = "/usr/sbin/dovecot"

// dovecotSkip is the message for tests that skip because Dovecot is missing.
const dovecotSkip = "dovecot not installed: apt-get install dovecot-imapd dovecot-pop3d"

// Dovecot is a private Dovecot instance for integration tests: IMAP and
// POP3 on 127.0.0.1 only, a passwd-file user with a clear-text password (so
// PLAIN, LOGIN, CRAM-MD5 and APOP all work), maildirs, no TLS, and
// everything (configuration, sockets, state, log, mail) in Dir.
type Dovecot struct {
	IMAPAddr, POP3Addr           string // 127.0.0.1:port
	IMAPProxyAddr, POP3ProxyAddr string // listeners that expect a PROXY protocol header (haproxy = yes)
	User, Password               string // a passwd-file user with a clear-text password
	Dir                          string // the instance folder (maildirs under Dir/mail/<user>)
	// AuthSocket is the path of a Dovecot SASL socket that anyone may
	// use, for a Postfix that authenticates its clients against User
	// (StartPostfixSASL).
	AuthSocket string

	*daemon
	mailUID, mailGID int // owner of the maildir when running as root; -1 otherwise
	seq              atomic.Int64
}

// StartDovecot starts a private Dovecot and stops it when the test ends.
// It skips the test when Dovecot is not installed and fails it, with
// Dovecot's log, when Dovecot is installed but does not start. Every call
// makes its own instance (folder and ports), so parallel tests do not
// share one.
func StartDovecot(t testing.TB) *Dovecot {
	t.Helper()
	for _, p := range []string{dovecotBin, "/usr/lib/dovecot/imap-login", "/usr/lib/dovecot/pop3-login"} {
		if _, err := os.Stat(p); err != nil {
			t.Skip(dovecotSkip)
		}
	}

	dmn := newDaemon(t, "dovecot", "dovecot.log")
	d := &Dovecot{User: "testuser", Password: "test-Passw0rd", Dir: dmn.dir, daemon: dmn, mailUID: -1, mailGID: -1}
	d.AuthSocket = filepath.Join(d.Dir, "run", dovecotAuthSocket)
	cfg, err := d.setup()
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	dmn.startOnFreePorts(t, 4, func(ports []int) (stop func(), err error) {
		cfg.IMAPPort, cfg.POP3Port, cfg.IMAPProxyPort, cfg.POP3ProxyPort = ports[0], ports[1], ports[2], ports[3]
		d.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		d.POP3Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		d.IMAPProxyAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
		d.POP3ProxyAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[3]))
		return d.start(cfg)
	})
	return d
}

// LogContains reports whether Dovecot's log has s, for example the client
// address that a login line records as rip=.
func (d *Dovecot) LogContains(s string) bool { return d.logContains(s) }

// Deliver puts msg in the user's INBOX as a new maildir message. Write it
// with CR LF line ends so that what POP3 and IMAP return is msg itself.
func (d *Dovecot) Deliver(t testing.TB, msg []byte) {
	t.Helper()
	maildir := filepath.Join(d.Dir, "mail", d.User)
	now := time.Now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.testutil,S=%d", now.Unix(), now.Nanosecond()/1000, os.Getpid(), d.seq.Add(1), len(msg))
	tmp := filepath.Join(maildir, "tmp", name)
	if err := os.WriteFile(tmp, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	if d.mailUID >= 0 {
		if err := os.Chown(tmp, d.mailUID, d.mailGID); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, filepath.Join(maildir, "new", name)); err != nil {
		t.Fatal(err)
	}
}

// dovecotAuthSocket is the name, under base_dir, of the auth socket that
// Postfix's smtpd may use.
const dovecotAuthSocket = "auth-smtpd"

// dovecotConfig fills dovecotConf.
type dovecotConfig struct {
	Dir, User, AuthSocket                            string
	InternalUser, InternalGroup, LoginUser           string
	MailUser, MailGroup                              string
	FirstValidUID, FirstValidGID                     int
	Chroot                                           bool
	IMAPPort, POP3Port, IMAPProxyPort, POP3ProxyPort int
}

// setup writes the passwd file and the maildir and chooses the users
// Dovecot's processes run as.
func (d *Dovecot) setup() (*dovecotConfig, error) {
	cfg := &dovecotConfig{Dir: d.Dir, User: d.User, AuthSocket: dovecotAuthSocket}
	if os.Geteuid() == 0 {
		// Dovecot never accesses mail as root ("Mail access not allowed
		// for root"), so mail belongs to the package's dovecot user, whose
		// uid is below the default first_valid_uid of 500. The login and
		// internal processes keep the package's dovenull and dovecot users.
		u, err := user.Lookup("dovecot")
		if err != nil {
			return nil, fmt.Errorf("user dovecot (made by dovecot-core): %w", err)
		}
		d.mailUID, _ = strconv.Atoi(u.Uid)
		d.mailGID, _ = strconv.Atoi(u.Gid)
		cfg.InternalUser, cfg.InternalGroup, cfg.LoginUser = "dovecot", "dovecot", "dovenull"
		cfg.MailUser, cfg.MailGroup = u.Uid, u.Gid
		cfg.FirstValidUID, cfg.FirstValidGID = d.mailUID, d.mailGID
		cfg.Chroot = true
	} else {
		// Without root every process runs as us: Dovecot's rootless mode.
		u, err := user.Current()
		if err != nil {
			return nil, err
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			return nil, err
		}
		cfg.InternalUser, cfg.InternalGroup, cfg.LoginUser = u.Username, g.Name, u.Username
		cfg.FirstValidUID, _ = strconv.Atoi(u.Uid)
		cfg.FirstValidGID, _ = strconv.Atoi(u.Gid)
	}

	maildir := filepath.Join(d.Dir, "mail", d.User)
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		p := filepath.Join(maildir, sub)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
		if d.mailUID >= 0 {
			if err := os.Chown(p, d.mailUID, d.mailGID); err != nil {
				return nil, err
			}
		}
	}
	// user:password:uid:gid:gecos:home:shell:extra; uid and gid come from
	// mail_uid and mail_gid.
	passwd := fmt.Sprintf("%s:{PLAIN}%s::::%s::\n", d.User, d.Password, maildir)
	if err := os.WriteFile(filepath.Join(d.Dir, "passwd"), []byte(passwd), 0o644); err != nil {
		return nil, err
	}
	return cfg, nil
}

// start writes the configuration, runs the master in the foreground in
// its own process group and waits until it accepts connections. The
// returned func stops it.
func (d *Dovecot) start(cfg *dovecotConfig) (stop func(), err error) {
	conf := filepath.Join(d.Dir, "dovecot.conf")
	if err := writeTemplate(conf, dovecotConf, cfg); err != nil {
		return nil, err
	}
	p, err := d.run(dovecotBin, "-F", "-c", conf)
	if err != nil {
		return nil, err
	}
	stop = func() {
		// SIGTERM to the whole group: every process ends at once rather
		// than when the master gets round to it. The master then waits
		// for its children and, if any was not reaped yet, SIGQUITs it
		// and sleeps a whole second so that a restart finds the ports
		// closed. No restart follows here, so after a short grace the
		// group gets SIGKILL.
		p.stop(500*time.Millisecond, func() []int {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
			return nil
		})
	}
	// The master binds every listener before it logs "starting up" (a
	// port taken makes it exit with "Failed to start listeners"), so the
	// line and a live master mean all four ports are ours. Dialling to
	// find out could reach another instance that took one of the ports.
	if err := d.waitForLog(p, " starting up for "); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// dovecotConf is a complete configuration (nothing from /etc/dovecot), in
// Dovecot 2.3 syntax.
var dovecotConf = template.Must(template.New("dovecot.conf").Parse(`# Written by internal/testutil for one test run.
base_dir = {{.Dir}}/run
state_dir = {{.Dir}}/state
instance_name = testutil
log_path = {{.Dir}}/dovecot.log
auth_verbose = yes

protocols = imap pop3
listen = 127.0.0.1
ssl = no
# Clients behind a PROXY header are not "secured" (only 127.0.0.1 is), and
# there is no TLS: allow clear-text logins everywhere.
disable_plaintext_auth = no
# CRAM-MD5 and APOP need the password itself: the passwd file has {PLAIN}.
auth_mechanisms = plain login cram-md5 apop

haproxy_trusted_networks = 127.0.0.1
login_trusted_networks = 127.0.0.1

default_internal_user = {{.InternalUser}}
default_internal_group = {{.InternalGroup}}
default_login_user = {{.LoginUser}}
{{- if .MailUser}}
# Dovecot never reads mail as root; the mail user's uid is a system one.
mail_uid = {{.MailUser}}
mail_gid = {{.MailGroup}}
{{- end}}
first_valid_uid = {{.FirstValidUID}}
first_valid_gid = {{.FirstValidGID}}

passdb {
  driver = passwd-file
  args = {{.Dir}}/passwd
}
userdb {
  driver = passwd-file
  args = {{.Dir}}/passwd
}
mail_location = maildir:{{.Dir}}/mail/%u
mail_fsync = never
{{if not .Chroot}}
# Only root can chroot: Dovecot's rootless mode.
service anvil {
  chroot =
}
service ipc {
  chroot =
}
{{end}}
# The default listeners' ports (143, 993, 110, 995) are replaced or off.
service imap-login {
{{- if not .Chroot}}
  chroot =
{{- end}}
  inet_listener imap {
    port = {{.IMAPPort}}
  }
  inet_listener imaps {
    port = 0
  }
  inet_listener imap_haproxy {
    port = {{.IMAPProxyPort}}
    haproxy = yes
  }
}
service pop3-login {
{{- if not .Chroot}}
  chroot =
{{- end}}
  inet_listener pop3 {
    port = {{.POP3Port}}
  }
  inet_listener pop3s {
    port = 0
  }
  inet_listener pop3_haproxy {
    port = {{.POP3ProxyPort}}
    haproxy = yes
  }
}
# SASL for a Postfix of another uid (smtpd_sasl_type = dovecot).
service auth {
  unix_listener {{.AuthSocket}} {
    mode = 0666
  }
}
`))
