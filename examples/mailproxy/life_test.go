package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

// loggedIn returns an idle IMAP session relayed to the backend.
func loggedIn(t *testing.T, addr string) *testutil.Client {
	t.Helper()
	c := testutil.Dial(t, "tcp", addr)
	c.Exchange("", "* OK")
	c.Exchange("a LOGIN demo demo\r\n", "a OK")
	return c
}

// serverCloses waits for the proxy to close c, and returns how long it
// took.
func serverCloses(t *testing.T, c *testutil.Client) time.Duration {
	t.Helper()
	start := time.Now()
	c.Conn.SetReadDeadline(start.Add(10 * time.Second))
	if !c.Closed() {
		t.Fatal("a line came instead of the close")
	}
	return time.Since(start)
}

// worker_shutdown_timeout closes the sessions still running on the old
// configuration after a reload, and those still running after QUIT, when
// it expires; without it they run on.
func TestWorkerShutdownTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	authURL := startAuth(t, startIMAPBackend(t))
	for _, stop := range []string{"reload", "quit"} {
		t.Run(stop, func(t *testing.T) {
			conf := imapConf{dir: t.TempDir(), addr: testutil.FreeAddr(t), authURL: authURL,
				main: "worker_shutdown_timeout 300ms;", capability: "FIRST"}
			p := startProgram(t, "-c", conf.write(t))
			testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(conf.addr) })
			old := loggedIn(t, conf.addr)
			if stop == "reload" {
				conf.capability = "SECOND"
				conf.write(t)
				p.sigs <- syscall.SIGHUP
				testutil.WaitFor(t, "the new configuration", func() bool { return strings.Contains(capability(t, conf.addr), "SECOND") })
			} else {
				p.sigs <- syscall.SIGQUIT
			}
			if took := serverCloses(t, old); took < timeout/3 {
				t.Errorf("the old session was closed after %v, before worker_shutdown_timeout %v", took, timeout)
			}
			if stop == "reload" {
				loggedIn(t, conf.addr).Exchange("b NOOP\r\n", "b OK")
				return
			}
			if code := p.waitExit(t, "the shutdown timeout"); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
}

// An idle proxy, and one whose last client logged out and keeps its
// connection, exits on TERM and QUIT in well under 100ms. The test
// measures the real program ten times each and reports the median.
func TestStopIsQuick(t *testing.T) {
	cases := []struct {
		name   string
		sig    syscall.Signal
		logout bool // a client logged out and keeps its connection
	}{
		{"TERM, idle", syscall.SIGTERM, false},
		{"QUIT, idle", syscall.SIGQUIT, false},
		{"QUIT, after a LOGOUT", syscall.SIGQUIT, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var times []time.Duration
			for range 10 {
				conf := imapConf{dir: t.TempDir(), addr: testutil.FreeAddr(t), authURL: "127.0.0.1:9/auth"}
				p := startBinary(t, "-c", conf.write(t))
				testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(conf.addr) })
				if tc.logout {
					c := testutil.Dial(t, "tcp", conf.addr)
					c.Exchange("", "* OK")
					c.Exchange("a LOGOUT\r\n", "* BYE", "a OK")
				}
				took := p.signal(t, tc.sig, 10*time.Second)
				if took >= time.Second {
					t.Errorf("stopped in %v", took)
				}
				times = append(times, took)
			}
			slices.Sort(times)
			t.Logf("median of %d stops: %v (fastest %v, slowest %v)", len(times), (times[4]+times[5])/2, times[0], times[9])
		})
	}
}

// -s reload reloads the running program named by the pid file, -s quit
// stops it gracefully, as nginx -s does.
func TestControlSignals(t *testing.T) {
	conf := imapConf{dir: t.TempDir(), addr: testutil.FreeAddr(t), authURL: startAuth(t, startIMAPBackend(t)), capability: "FIRST"}
	path := conf.write(t)
	p := startBinary(t, "-c", path)
	testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(conf.addr) })
	control := func(cmd string) {
		t.Helper()
		if out, err := runBinary(t, "-s", cmd, "-c", path); err != nil {
			t.Fatalf("-s %s: %v\n%s", cmd, err, out)
		}
	}

	session := loggedIn(t, conf.addr)
	conf.capability = "SECOND"
	conf.write(t)
	control("reload")
	testutil.WaitFor(t, "the reloaded configuration", func() bool { return strings.Contains(capability(t, conf.addr), "SECOND") })

	control("quit")
	testutil.WaitFor(t, "the socket to close", func() bool { return !testutil.Accepting(conf.addr) })
	if p.exited() {
		t.Fatal("-s quit did not wait for the session")
	}
	session.Exchange("b NOOP\r\n", "b OK")
	session.Exchange("c LOGOUT\r\n", "* BYE", "c OK")
	session.Conn.Close()
	p.wait(t, 10*time.Second)
	if _, err := os.Stat(filepath.Join(conf.dir, "mail.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}

// runBinary runs the program to the end and returns its standard error.
func runBinary(t *testing.T, args ...string) (string, error) {
	p := startBinary(t, args...)
	<-p.done
	return p.stderr.String(), p.err
}

// -s tells what goes wrong: an unknown signal, no pid file.
func TestControlSignalErrors(t *testing.T) {
	dir := t.TempDir()
	conf := imapConf{dir: dir, addr: "127.0.0.1:1", authURL: "127.0.0.1:9/auth"}
	path := conf.write(t)
	tests := []struct {
		name string
		pid  string // the pid file's content; none when empty
		args []string
		want string
	}{
		{"unknown", "", []string{"-s", "restart", "-c", path}, `invalid option: "-s restart"`},
		{"no pid file", "", []string{"-s", "reload", "-c", path}, filepath.Join(dir, "mail.pid") + ": no such file"},
		{"bad pid file", "mailproxy\n", []string{"-s", "reload", "-c", path}, `invalid PID number "mailproxy"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(dir, "mail.pid"))
			if tt.pid != "" {
				os.WriteFile(filepath.Join(dir, "mail.pid"), []byte(tt.pid), 0o644)
			}
			var stderr bytes.Buffer
			if code := run(tt.args, &stderr, &stderr, nil); code != 1 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, %q; want 1 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}

// The directives of nginx's main context that mean nothing here are named
// at -t, with what replaces them; worker_connections caps the sessions.
func TestMainContextDirectives(t *testing.T) {
	dir := t.TempDir()
	conf := imapConf{dir: dir, addr: testutil.FreeAddr(t), authURL: "127.0.0.1:9/auth",
		main: "daemon off; worker_processes auto; events { use epoll; worker_connections 1; }"}
	path := conf.write(t)
	var stderr bytes.Buffer
	if code := run([]string{"-t", "-c", path}, &stderr, &stderr, nil); code != 0 {
		t.Fatalf("-t: exit %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"daemon", "worker_processes", "GOMAXPROCS", "system's best", "process manager"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-t says nothing of %q:\n%s", want, stderr.String())
		}
	}

	startProgram(t, "-c", path)
	testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(conf.addr) })
	// The probes of the wait may hold the one place for a moment.
	testutil.WaitFor(t, "a session", func() bool {
		return testutil.Dial(t, "tcp", conf.addr).Line() == "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] IMAP4 ready"
	})
	testutil.Dial(t, "tcp", conf.addr).Exchange("", "* BYE Too many connections", "<closed>")
}

// worker_rlimit_nofile sets the program's limit of open descriptors.
func TestWorkerRlimitNofile(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	want := min(uint64(2345), rl.Max) // beyond the hard limit, only root may go
	conf := imapConf{dir: t.TempDir(), addr: testutil.FreeAddr(t), authURL: "127.0.0.1:9/auth", main: "worker_rlimit_nofile 2345;"}
	p := startBinary(t, "-c", conf.write(t))
	testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(conf.addr) })
	limits, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/limits")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	m := regexp.MustCompile(`(?m)^Max open files\s+(\d+)`).FindSubmatch(limits)
	if m == nil || string(m[1]) != strconv.FormatUint(want, 10) {
		t.Errorf("limits:\n%s\nwant a soft limit of %d open files", limits, want)
	}
	p.signal(t, syscall.SIGTERM, 10*time.Second)
}

// Started as root, the program serves as the user of the user directive
// once its sockets are open and its key is read: its credentials in
// /proc say so, and sessions work. A reload reads the root-only
// configuration and key through the privileged helper; one that needs a
// new port below 1024 fails, saying so, and the old configuration goes
// on. The pid file, in a folder only root may write to, is removed at the
// exit.
func TestPrivilegesDropped(t *testing.T) {
	nobody := rootServingAsNobody(t)
	dir := t.TempDir()                                                                                                     // 0700, root's
	certFile, keyFile := testutil.NewCA(t, "mailproxy test").Issue(t, testutil.CertOptions{}).WriteFiles(t, dir, "server") // the key: 0600
	tls := "ssl_certificate " + certFile + "; ssl_certificate_key " + keyFile + "; starttls on;"
	conf := imapConf{dir: dir, addr: testutil.FreeAddr(t), authURL: startAuth(t, startIMAPBackend(t)),
		capability: "FIRST", server: tls} // no user directive: nginx's default, nobody
	path := conf.write(t)
	p := startBinary(t, "-c", path)
	testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(conf.addr) })

	// The switch comes right after the sockets open.
	testutil.WaitFor(t, "the switch of user", func() bool { return procStatus(t, p.cmd.Process.Pid)["Uid"][0] != "0" })
	status := procStatus(t, p.cmd.Process.Pid)
	for _, field := range []string{"Uid", "Gid"} {
		want := nobody.Uid
		if field == "Gid" {
			want = strconv.Itoa(defaultGID(t))
		}
		if got := status[field]; len(got) != 4 || slices.ContainsFunc(got, func(id string) bool { return id != want }) {
			t.Errorf("%s: %v, want %s for real, effective, saved and file system", field, got, want)
		}
	}
	s := loggedIn(t, conf.addr)
	s.Exchange("b NOOP\r\n", "b OK")

	conf.capability = "SECOND"
	conf.write(t)
	p.cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, "the reload read as root", func() bool { return strings.Contains(capability(t, conf.addr), "SECOND") })

	conf.server = tls + " listen 127.0.0.1:" + strconv.Itoa(freePrivilegedPort(t)) + ";"
	conf.capability = "THIRD"
	conf.write(t)
	p.cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, "the reload to fail", func() bool { return strings.Contains(p.stderr.String(), "reload failed") })
	if !strings.Contains(p.stderr.String(), "permission denied") || !strings.Contains(p.stderr.String(), "needs a restart") {
		t.Errorf("the failed reload does not say why:\n%s", p.stderr.String())
	}
	if c := capability(t, conf.addr); !strings.Contains(c, "SECOND") {
		t.Errorf("after the failed reload: %q", c)
	}
	s.Exchange("c NOOP\r\n", "c OK")

	s.Conn.Close()
	p.signal(t, syscall.SIGQUIT, 10*time.Second)
	if _, err := os.Stat(filepath.Join(dir, "mail.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}

// rootServingAsNobody skips a test unless it runs as root (the program
// switches user only when started as root) on a system with the user
// nobody, whom it returns.
func rootServingAsNobody(t *testing.T) *user.User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs as root only: the program switches user when started as root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	return nobody
}

// The demo, started as root, serves as nobody too.
func TestDemoDropsPrivileges(t *testing.T) {
	nobody := rootServingAsNobody(t)
	p := startBinary(t, "-demo-ports", "0,0,0")
	var addr string
	testutil.WaitFor(t, "the banner", func() bool {
		m := bannerAddr.FindStringSubmatch(p.stdout.String())
		if m != nil {
			addr = m[2]
		}
		return m != nil
	})
	testutil.WaitFor(t, "the switch of user", func() bool { return procStatus(t, p.cmd.Process.Pid)["Uid"][0] != "0" })
	if got := procStatus(t, p.cmd.Process.Pid)["Uid"]; got[0] != nobody.Uid {
		t.Errorf("Uid %v, want %s", got, nobody.Uid)
	}
	loggedIn(t, addr).Exchange("b SELECT INBOX\r\n", "…b OK")
	p.signal(t, syscall.SIGTERM, 10*time.Second)
}

// procStatus reads the fields of /proc/pid/status.
func procStatus(t *testing.T, pid int) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	fields := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":"); ok {
			fields[name] = strings.Fields(value)
		}
	}
	return fields
}

// defaultGID returns the group the program serves as by default: nogroup
// where the system has it, else nobody's own.
func defaultGID(t *testing.T) int {
	t.Helper()
	c, err := lookupCredential("", "")
	if err != nil {
		t.Fatal(err)
	}
	return c.gid
}

// freePrivilegedPort returns a port below 1024 free on 127.0.0.1.
func freePrivilegedPort(t *testing.T) int {
	t.Helper()
	for port := 900; port < 1024; port++ {
		if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Skip("no free port below 1024")
	return 0
}
