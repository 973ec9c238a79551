//go:build unix

package testutil

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
)

// testMessage has CR LF line ends, as on the wire.
const testMessage = "From: a@example.org\r\nTo: testuser@example.org\r\nSubject: hello\r\n\r\nHello, Dovecot.\r\n"

// expect fails the test unless the last reply line starts with prefix.
func expect(t *testing.T, lines []string, prefix string) {
	t.Helper()
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], prefix) {
		t.Fatalf("got %q, want a last line starting with %q", lines, prefix)
	}
}

// greeting reads the first line and checks its start.
func greeting(t *testing.T, c *Client, prefix string) string {
	t.Helper()
	g := c.Line()
	if !strings.HasPrefix(g, prefix) {
		t.Fatalf("greeting %q, want %q...", g, prefix)
	}
	return g
}

func TestDovecotIMAP(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t)
	c := Dial(t, "tcp", d.IMAPAddr)
	greeting(t, c, "* OK")
	expect(t, c.Cmd(fmt.Sprintf("a LOGIN %q %q", d.User, d.Password), "a "), "a OK")
	expect(t, c.Cmd("b SELECT INBOX", "b "), "b OK")

	// A synchronising literal: the server must ask for it with "+".
	expect(t, c.Cmd(fmt.Sprintf("c APPEND INBOX {%d}", len(testMessage)), ""), "+")
	expect(t, c.Cmd(testMessage, "c "), "c OK")

	// "* 1 FETCH (BODY[] {n}", n bytes, ")", then the tagged reply.
	c.Send("d FETCH 1 BODY[]")
	head := c.Line()
	m := regexp.MustCompile(`^\* 1 FETCH \(.*BODY\[\] \{(\d+)\}$`).FindStringSubmatch(head)
	if m == nil {
		t.Fatalf("FETCH reply %q", head)
	}
	var n int
	fmt.Sscan(m[1], &n)
	body := make([]byte, n)
	if _, err := io.ReadFull(c.R, body); err != nil {
		t.Fatal(err)
	}
	if string(body) != testMessage {
		t.Errorf("FETCH body %q, want %q", body, testMessage)
	}
	if l := c.Line(); !strings.HasSuffix(l, ")") {
		t.Errorf("after the literal: %q", l)
	}
	expect(t, []string{c.Line()}, "d OK")

	lines := c.Cmd("e LOGOUT", "e ")
	expect(t, lines, "e OK")
	if !strings.HasPrefix(lines[0], "* BYE") {
		t.Errorf("LOGOUT: %q", lines)
	}
}

func TestDovecotIMAPCRAMMD5(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t)
	c := Dial(t, "tcp", d.IMAPAddr)
	greeting(t, c, "* OK")
	ch := c.Cmd("a AUTHENTICATE CRAM-MD5", "+")
	challenge, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ch[len(ch)-1], "+ "))
	if err != nil {
		t.Fatalf("challenge %q: %v", ch, err)
	}
	mac := hmac.New(md5.New, []byte(d.Password))
	mac.Write(challenge)
	resp := d.User + " " + hex.EncodeToString(mac.Sum(nil))
	expect(t, c.Cmd(base64.StdEncoding.EncodeToString([]byte(resp)), "a "), "a OK")
	expect(t, c.Cmd("b LOGOUT", "b "), "b OK")
}

func TestDovecotPOP3(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t)
	d.Deliver(t, []byte(testMessage))

	t.Run("USER", func(t *testing.T) {
		c := Dial(t, "tcp", d.POP3Addr)
		greeting(t, c, "+OK")
		expect(t, c.Cmd("USER "+d.User, ""), "+OK")
		expect(t, c.Cmd("PASS "+d.Password, ""), "+OK")
		expect(t, c.Cmd("STAT", ""), fmt.Sprintf("+OK 1 %d", len(testMessage)))
		lines := c.Cmd("RETR 1", ".")
		expect(t, lines[:1], "+OK")
		if got := strings.Join(lines[1:len(lines)-1], "\r\n") + "\r\n"; got != testMessage {
			t.Errorf("RETR %q, want %q", got, testMessage)
		}
		expect(t, c.Cmd("QUIT", ""), "+OK")
	})

	// Dovecot puts an APOP timestamp in the greeting when the apop
	// mechanism is on; the digest is MD5(timestamp + password).
	t.Run("APOP", func(t *testing.T) {
		c := Dial(t, "tcp", d.POP3Addr)
		g := greeting(t, c, "+OK")
		ts := regexp.MustCompile(`<[^<>]+@[^<>]+>`).FindString(g)
		if ts == "" {
			t.Fatalf("no APOP timestamp in %q", g)
		}
		sum := md5.Sum([]byte(ts + d.Password))
		expect(t, c.Cmd("APOP "+d.User+" "+hex.EncodeToString(sum[:]), ""), "+OK")
		expect(t, c.Cmd("STAT", ""), "+OK 1 ")
		expect(t, c.Cmd("QUIT", ""), "+OK")
	})
}

// The haproxy = yes listeners take the client address from the PROXY
// header, and Dovecot logs it as the login's rip.
func TestDovecotPROXY(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t)
	tests := []struct {
		name, addr, ip, port, greeting, login, until, ok string
	}{
		{"IMAP", d.IMAPProxyAddr, "192.0.2.7", "143", "* OK",
			fmt.Sprintf("a LOGIN %q %q", d.User, d.Password), "a ", "a OK"},
		{"POP3", d.POP3ProxyAddr, "192.0.2.8", "110", "+OK",
			"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+d.User+"\x00"+d.Password)), "", "+OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Dial(t, "tcp", tt.addr)
			c.Send("PROXY TCP4 %s 127.0.0.1 5555 %s", tt.ip, tt.port)
			greeting(t, c, tt.greeting)
			expect(t, c.Cmd(tt.login, tt.until), tt.ok)
			WaitFor(t, "Dovecot to log rip="+tt.ip, func() bool { return d.LogContains("rip=" + tt.ip) })
		})
	}
}
