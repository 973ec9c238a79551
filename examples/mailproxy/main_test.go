package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

// program runs the command in the background.
type program struct {
	stdout, stderr testutil.Buffer
	sigs           chan os.Signal
	exit           chan int
}

func startProgram(t *testing.T, args ...string) *program {
	t.Helper()
	p := &program{sigs: make(chan os.Signal, 1), exit: make(chan int, 1)}
	go func() { p.exit <- run(args, &p.stdout, &p.stderr, p.sigs) }()
	t.Cleanup(func() {
		select {
		case p.sigs <- syscall.SIGTERM:
			<-p.exit
		case <-p.exit:
		}
	})
	return p
}

// stop sends sig and returns the exit code.
func (p *program) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	p.sigs <- sig
	return p.waitExit(t, sig.String())
}

// waitExit waits ten seconds at most for the exit, after what, and
// returns its code.
func (p *program) waitExit(t *testing.T, after string) int {
	t.Helper()
	select {
	case code := <-p.exit:
		p.exit <- code // for the cleanup
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit after %s; stderr:\n%s", after, p.stderr.String())
		return -1
	}
}

func TestTestFlag(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("mail {\n  listen 143;\n}\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"example config", []string{"-t", "-c", "../mailproxy.conf"}, 0, "configuration file ../mailproxy.conf test is successful"},
		{"whole nginx.conf", []string{"-t", "-c", "../../config/testdata/nginx-full.conf", "-e", "stderr"}, 0, "test is successful"},
		{"prefix", []string{"-t", "-p", "../..", "-c", "examples/mailproxy.conf"}, 0, "test is successful"},
		{"bad config", []string{"-t", "-c", bad}, 1, bad + `:2: "listen" directive is not allowed here`},
		{"missing file", []string{"-t", "-c", filepath.Join(dir, "none.conf")}, 1, "no such file"},
		{"bad -g", []string{"-t", "-c", "../mailproxy.conf", "-g", "pid"}, 1, "-g"},
		{"demo", []string{"-t"}, 0, "(embedded demo) test is successful"},
		{"bad flag", []string{"-x"}, 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr, nil)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"-v"}, &stdout, io.Discard, nil); code != 0 || !strings.HasPrefix(stdout.String(), "mailproxy version ") {
		t.Fatalf("exit %d, %q", code, stdout.String())
	}
}

var bannerAddr = regexp.MustCompile(`(?m)^  (IMAP|POP3|SMTP)  (\S+)$`)

// The demo answers real clients on the ports it prints.
func TestDemoAnswersRealClients(t *testing.T) {
	p := startProgram(t, "-demo-ports", "0,0,0")
	addrs := map[string]string{}
	testutil.WaitFor(t, "the banner", func() bool {
		for _, m := range bannerAddr.FindAllStringSubmatch(p.stdout.String(), -1) {
			addrs[m[1]] = m[2]
		}
		return len(addrs) == 3
	})

	ic, err := imapclient.DialInsecure(addrs["IMAP"], nil)
	if err != nil {
		t.Fatal(err)
	}
	caps, err := ic.Capability().Wait()
	if err != nil || !caps.Has("IMAP4rev1") {
		t.Errorf("IMAP capabilities %v, %v", caps, err)
	}
	if err := ic.Login(demoUser, demoPassword).Wait(); err != nil {
		t.Fatalf("IMAP login through the proxy: %v", err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("IMAP select on the backend: %v", err)
	}
	if err := ic.Logout().Wait(); err != nil {
		t.Errorf("IMAP logout: %v", err)
	}
	ic.Close()

	// STARTTLS with the demo's self-signed certificate.
	ic, err = imapclient.DialStartTLS(addrs["IMAP"], &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatalf("IMAP STARTTLS: %v", err)
	}
	if err := ic.Login(demoUser, demoPassword).Wait(); err != nil {
		t.Fatalf("IMAP login over STARTTLS: %v", err)
	}
	ic.Close()

	sc, err := gosmtp.Dial(addrs["SMTP"])
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := sc.Extension("8BITMIME"); !ok {
		t.Error("SMTP EHLO does not list 8BITMIME")
	}
	if err := sc.Auth(sasl.NewPlainClient("", demoUser, demoPassword)); err != nil {
		t.Fatalf("SMTP auth through the proxy: %v", err)
	}
	if err := sc.SendMail("demo@example.org", []string{"demo@example.org"}, strings.NewReader("Subject: t\r\n\r\nx\r\n")); err != nil {
		t.Errorf("SMTP send through the proxy: %v", err)
	}
	if err := sc.Quit(); err != nil {
		t.Errorf("SMTP quit: %v", err)
	}

	pc := testutil.Dial(t, "tcp", addrs["POP3"])
	if g := pc.Line(); !strings.HasPrefix(g, "+OK") {
		t.Errorf("POP3 greeting %q", g)
	}
	if got := pc.Cmd("CAPA", "."); got[0] != "+OK Capability list follows" || !slices.Contains(got, "UIDL") || got[len(got)-2] != "STLS" {
		t.Errorf("POP3 CAPA %q", got)
	}
	pc.Exchange("USER demo\r\nPASS demo\r\nRETR 1\r\n", "+OK", "+OK", "+OK", "…Hello from the mailproxy demo.")
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func writeConf(t *testing.T, path, addr, capability string) {
	t.Helper()
	conf := fmt.Sprintf(`error_log stderr info;
pid %s.pid;
mail {
    auth_http 127.0.0.1:9/auth;
    server { listen %s; protocol imap; imap_capabilities IMAP4rev1 %s; }
}
`, path, addr, capability)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// SIGHUP reloads the configuration: a connected client stays connected to
// the old server, new clients meet the new one on the same socket, and a
// broken configuration keeps the running one.
func TestSignalReload(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "mail.conf")
	addr := testutil.FreeAddr(t)
	writeConf(t, conf, addr, "FIRST")
	p := startProgram(t, "-c", conf)
	testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(addr) })
	if pid, err := os.ReadFile(conf + ".pid"); err != nil || strings.TrimSpace(string(pid)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("pid file %q, %v", pid, err)
	}
	old := testutil.Dial(t, "tcp", addr)
	old.Line()

	writeConf(t, conf, addr, "SECOND")
	p.sigs <- syscall.SIGHUP
	testutil.WaitFor(t, "the new configuration", func() bool { return strings.Contains(capability(t, addr), "SECOND") })
	if got := old.Cmd("a CAPABILITY", "a "); !strings.Contains(got[0], "FIRST") || got[1] != "a OK CAPABILITY completed" {
		t.Errorf("the client connected before the reload got %q", got)
	}

	os.WriteFile(conf, []byte("mail { server { listen "+addr+"; protocol nntp; } }"), 0o644)
	p.sigs <- syscall.SIGHUP
	testutil.WaitFor(t, "the reload error", func() bool { return strings.Contains(p.stderr.String(), "reload failed") })
	if c := capability(t, addr); !strings.Contains(c, "SECOND") {
		t.Errorf("after a bad reload the proxy answers %q", c)
	}
	if got := old.Cmd("b NOOP", "b "); got[0] != "b OK NOOP completed" {
		t.Errorf("old client after a bad reload: %q", got)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
	if _, err := os.Stat(conf + ".pid"); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}

func capability(t *testing.T, addr string) string {
	c := testutil.Dial(t, "tcp", addr)
	c.Line()
	caps := c.Cmd("c CAPABILITY", "c ")[0]
	c.Cmd("d LOGOUT", "d ")
	return caps
}

// SIGQUIT stops accepting and waits for the sessions in progress.
func TestSignalGracefulShutdown(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "mail.conf")
	addr := testutil.FreeAddr(t)
	writeConf(t, conf, addr, "X")
	p := startProgram(t, "-c", conf, "-e", "stderr")
	testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(addr) })
	c := testutil.Dial(t, "tcp", addr)
	c.Line()
	p.sigs <- syscall.SIGQUIT
	testutil.WaitFor(t, "the socket to close", func() bool { return !testutil.Accepting(addr) })
	select {
	case code := <-p.exit:
		t.Fatalf("exited (%d) with a session open", code)
	case <-time.After(100 * time.Millisecond):
	}
	c.Cmd("a LOGOUT", "a ")
	if code := p.waitExit(t, "the last session ended"); code != 0 {
		t.Errorf("exit %d", code)
	}
}
