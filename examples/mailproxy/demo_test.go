package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

var bannerCommand = regexp.MustCompile(`(?m)^  ((?:curl|printf) .*)$`)

// Every command the demo's banner prints works as printed, in a POSIX
// shell with curl: the welcome message is fetched over IMAP and POP3, and
// the message sent over SMTP reaches the backend, whose delivery puts it in
// the mailbox read over IMAP. Then the same with STARTTLS, as the banner
// says.
func TestDemoBannerCommands(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (.ci/run installs it)")
	}
	tests := []struct {
		name   string
		suffix string // added to each command, as the banner tells
	}{
		{"plain", ""},
		{"starttls", " --ssl-reqd -k"},
	}
	want := []string{ // in each command's output, in the banner's order
		"Subject: Welcome\r\n\r\nHello from the mailproxy demo.\r\n",
		"Subject: Welcome\r\n\r\nHello from the mailproxy demo.\r\n",
		"",
		"Subject: Hello\r\n\r\nSent through the proxy.\r\n",
	}
	p := startProgram(t, "-demo-ports", "0,0,0")
	testutil.WaitFor(t, "the banner", func() bool { return strings.Contains(p.stdout.String(), "stop with Ctrl-C") })
	var commands []string
	for _, m := range bannerCommand.FindAllStringSubmatch(p.stdout.String(), -1) {
		commands = append(commands, m[1])
	}
	if len(commands) != len(want) {
		t.Fatalf("the banner has %d commands, want %d:\n%s", len(commands), len(want), p.stdout.String())
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, cmd := range commands {
				out := runShell(t, cmd+tt.suffix)
				if !strings.Contains(out, want[i]) {
					t.Errorf("$ %s%s\nprinted %q, want %q in it", cmd, tt.suffix, out, want[i])
				}
			}
		})
	}
	// Both SMTP commands reached the backend: the mailbox holds three
	// messages.
	addrs := bannerAddr.FindAllStringSubmatch(p.stdout.String(), -1)
	if len(addrs) != 3 || addrs[1][1] != "POP3" {
		t.Fatalf("banner addresses %q", addrs)
	}
	pc := testutil.Dial(t, "tcp", addrs[1][2])
	pc.Exchange("USER demo\r\nPASS demo\r\nSTAT\r\nQUIT\r\n", "+OK", "+OK", "+OK", "+OK 3 ", "+OK")
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// runShell runs a command line with sh and returns its standard output; it
// fails the test if the command fails.
func runShell(t *testing.T, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("$ %s\n%v\n%s", line, err, stderr.String())
	}
	return string(out)
}

// -demo-addr 0.0.0.0 listens on every address, for a container, and the
// banner's commands still name one a client on the machine can dial.
func TestDemoAddr(t *testing.T) {
	tests := []struct {
		addr, listen, dial string
	}{
		{"127.0.0.1", "127.0.0.1", "127.0.0.1"},
		{"0.0.0.0", "0.0.0.0", "127.0.0.1"},
		{"::", "[::]", "[::1]"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if tt.addr == "::" && !ipv6Loopback() {
				t.Skip("no IPv6 loopback")
			}
			p := startProgram(t, "-demo-ports", "0,0,0", "-demo-addr", tt.addr)
			testutil.WaitFor(t, "the banner", func() bool { return strings.Contains(p.stdout.String(), "stop with Ctrl-C") })
			banner := p.stdout.String()
			m := regexp.MustCompile(`(?m)^  IMAP  (\S+):(\d+)$`).FindStringSubmatch(banner)
			if m == nil || m[1] != tt.listen {
				t.Fatalf("banner:\n%s\nwant IMAP on %s", banner, tt.listen)
			}
			try := fmt.Sprintf("curl 'imap://%s:%s/INBOX;UID=1' -u demo:demo", tt.dial, m[2])
			if !strings.Contains(banner, try) {
				t.Fatalf("banner:\n%s\nwant %q", banner, try)
			}
			c := testutil.Dial(t, "tcp", net.JoinHostPort(strings.Trim(tt.dial, "[]"), m[2]))
			if g := c.Line(); !strings.HasPrefix(g, "* OK") {
				t.Errorf("greeting %q", g)
			}
		})
	}
}

// ipv6Loopback reports whether ::1 can be listened on.
func ipv6Loopback() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// The demo mailbox, in memory and perhaps published from a container, takes
// demoMaxMessages messages over SMTP, then refuses with a temporary error.
func TestDemoMailboxCap(t *testing.T) {
	d, err := startDemo("127.0.0.1", [3]int{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := gosmtp.Dial(d.smtp.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range demoMaxMessages + 1 {
		err := c.SendMail("demo@example.org", []string{"demo@example.org"}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
		var serr *gosmtp.SMTPError
		switch {
		case i < demoMaxMessages && err != nil:
			t.Fatalf("message %d: %v", i+1, err)
		case i == demoMaxMessages && (!errors.As(err, &serr) || serr.Code != 452):
			t.Fatalf("message %d: %v, want 452", i+1, err)
		}
	}
	if n := len(d.pop3.Mailbox(demoUser)); n != 1+demoMaxMessages {
		t.Errorf("the mailbox holds %d messages, want %d", n, 1+demoMaxMessages)
	}
}
