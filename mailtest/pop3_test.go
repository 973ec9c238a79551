package mailtest

import (
	"bufio"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// testPOP3Msg has a line starting with "." to exercise byte-stuffing, and
// bare LF line endings that the server stores as CRLF.
const testPOP3Msg = "Subject: one\nFrom: a@example.org\n\nfirst\n.dot\nthird\n"

const testPOP3MsgCRLF = "Subject: one\r\nFrom: a@example.org\r\n\r\nfirst\r\n.dot\r\nthird\r\n"

func startPOP3(t *testing.T) *POP3Server {
	t.Helper()
	checkGoroutines(t)
	s, err := StartPOP3(POP3Options{Users: testUsers, Logger: quietLogger()})
	started(t, s, err)
	for _, msg := range []string{testPOP3Msg, "Subject: two\r\n\r\nsecond\r\n"} {
		if err := s.AddMessage("alice", []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// pop3Client drives a raw POP3 dialogue.
type pop3Client struct {
	t     *testing.T
	conn  net.Conn
	r     *bufio.Reader
	stamp string // APOP timestamp from the greeting
}

var stampRE = regexp.MustCompile(`<[0-9]+\.[0-9]+@mailtest>`)

func dialPOP3(t *testing.T, addr string) *pop3Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &pop3Client{t: t, conn: conn, r: bufio.NewReader(conn)}
	greeting := c.line()
	if !strings.HasPrefix(greeting, "+OK POP3 ready <") {
		t.Fatalf("greeting %q", greeting)
	}
	c.stamp = stampRE.FindString(greeting)
	if c.stamp == "" {
		t.Fatalf("no APOP timestamp in greeting %q", greeting)
	}
	return c
}

// line reads one reply line without CRLF.
func (c *pop3Client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("reply %q does not end with CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *pop3Client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends line and checks that the status line starts with want.
func (c *pop3Client) cmd(line, want string) string {
	c.t.Helper()
	c.send(line)
	got := c.line()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("C: %s\nS: %s\nwant prefix %q", line, got, want)
	}
	return got
}

// multi reads the lines of a multi-line reply as sent, up to the final ".".
func (c *pop3Client) multi() []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		if l == "." {
			return lines
		}
		lines = append(lines, l)
	}
}

// cmdMulti sends line, expects +OK and checks the body lines as sent.
func (c *pop3Client) cmdMulti(line string, want ...string) {
	c.t.Helper()
	c.cmd(line, "+OK")
	if got := c.multi(); !slices.Equal(got, want) {
		c.t.Fatalf("C: %s\nbody %q\nwant %q", line, got, want)
	}
}

// expectEOF checks that the server closed the connection.
func (c *pop3Client) expectEOF() {
	c.t.Helper()
	if l, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) {
		c.t.Fatalf("read %q, %v; want EOF", l, err)
	}
}

func (c *pop3Client) login() {
	c.t.Helper()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS secret", "+OK maildrop has 2 messages")
}

func plainResp(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

func apopDigest(stamp, password string) string {
	sum := md5.Sum([]byte(stamp + password))
	return hex.EncodeToString(sum[:])
}

func TestPOP3Login(t *testing.T) {
	tests := []struct {
		name   string
		dialog func(c *pop3Client)
		wantOK bool
	}{
		{"user pass", func(c *pop3Client) {
			c.cmd("USER alice", "+OK")
			c.cmd("PASS secret", "")
		}, true},
		{"pass with space", func(c *pop3Client) {
			c.cmd("user bob", "+OK")
			c.cmd("pass pass word", "")
		}, true},
		{"bad password", func(c *pop3Client) {
			c.cmd("USER alice", "+OK")
			c.cmd("PASS wrong", "")
		}, false},
		{"unknown user", func(c *pop3Client) {
			c.cmd("USER carol", "+OK")
			c.cmd("PASS secret", "")
		}, false},
		{"pass without user", func(c *pop3Client) { c.cmd("PASS secret", "") }, false},
		{"apop", func(c *pop3Client) { c.cmd("APOP alice "+apopDigest(c.stamp, "secret"), "") }, true},
		{"apop upper-case digest", func(c *pop3Client) {
			c.cmd("APOP alice "+strings.ToUpper(apopDigest(c.stamp, "secret")), "")
		}, true},
		{"apop bad digest", func(c *pop3Client) { c.cmd("APOP alice "+apopDigest(c.stamp, "wrong"), "") }, false},
		{"apop stale stamp", func(c *pop3Client) { c.cmd("APOP alice "+apopDigest("<1.1@mailtest>", "secret"), "") }, false},
		{"auth plain initial response", func(c *pop3Client) {
			c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "")
		}, true},
		{"auth plain continuation", func(c *pop3Client) {
			c.cmd("AUTH PLAIN", "+ ")
			c.cmd(plainResp("alice", "alice", "secret"), "")
		}, true},
		{"auth plain lower-case mechanism", func(c *pop3Client) {
			c.cmd("auth plain "+plainResp("", "bob", "pass word"), "")
		}, true},
		{"auth plain bad password", func(c *pop3Client) {
			c.cmd("AUTH PLAIN "+plainResp("", "alice", "wrong"), "")
		}, false},
		{"auth plain foreign identity", func(c *pop3Client) {
			c.cmd("AUTH PLAIN "+plainResp("bob", "alice", "secret"), "")
		}, false},
		{"auth plain cancelled", func(c *pop3Client) {
			c.cmd("AUTH PLAIN", "+ ")
			c.cmd("*", "")
		}, false},
		{"auth plain bad base64", func(c *pop3Client) { c.cmd("AUTH PLAIN !!!", "") }, false},
		{"auth plain empty", func(c *pop3Client) { c.cmd("AUTH PLAIN =", "") }, false},
		{"auth unknown mechanism", func(c *pop3Client) { c.cmd("AUTH CRAM-MD5", "") }, false},
	}
	s := startPOP3(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialPOP3(t, s.Addr)
			tt.dialog(c)
			// The last status line decides; STAT tells the states apart.
			if tt.wantOK {
				c.cmd("STAT", "+OK ")
			} else {
				c.cmd("STAT", "-ERR")
			}
			c.cmd("QUIT", "+OK")
			c.expectEOF()
		})
	}
}

func TestPOP3Transaction(t *testing.T) {
	s := startPOP3(t)
	c := dialPOP3(t, s.Addr)
	c.login()
	size1, size2 := len(testPOP3MsgCRLF), len("Subject: two\r\n\r\nsecond\r\n")
	c.cmd("STAT", fmt.Sprintf("+OK 2 %d", size1+size2))
	c.cmdMulti("LIST", fmt.Sprintf("1 %d", size1), fmt.Sprintf("2 %d", size2))
	c.cmd("LIST 2", fmt.Sprintf("+OK 2 %d", size2))
	c.cmd("LIST 3", "-ERR")
	c.cmd("LIST x", "-ERR")
	c.cmdMulti("RETR 1", "Subject: one", "From: a@example.org", "", "first", "..dot", "third")
	c.cmdMulti("TOP 1 0", "Subject: one", "From: a@example.org", "")
	c.cmdMulti("TOP 1 2", "Subject: one", "From: a@example.org", "", "first", "..dot")
	c.cmdMulti("TOP 1 99", "Subject: one", "From: a@example.org", "", "first", "..dot", "third")
	c.cmd("TOP 1", "-ERR")
	c.cmd("TOP 1 -1", "-ERR")
	c.cmdMulti("UIDL", "1 mailtest-1", "2 mailtest-2")
	c.cmd("UIDL 2", "+OK 2 mailtest-2")
	c.cmd("NOOP", "+OK")
	c.cmdMulti("CAPA", "TOP", "USER", "UIDL", "SASL PLAIN", "RESP-CODES", "AUTH-RESP-CODE")
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 1", "-ERR")
	c.cmd("RETR 1", "-ERR")
	c.cmd("STAT", fmt.Sprintf("+OK 1 %d", size2))
	c.cmdMulti("LIST", fmt.Sprintf("2 %d", size2))
	c.cmd("QUIT", "+OK")
	c.expectEOF()

	got := s.Mailbox("alice")
	if len(got) != 1 || string(got[0]) != "Subject: two\r\n\r\nsecond\r\n" {
		t.Fatalf("mailbox after QUIT = %q", got)
	}
	// The UID stays with the message.
	c = dialPOP3(t, s.Addr)
	c.cmd("USER alice", "+OK")
	c.cmd("PASS secret", "+OK maildrop has 1 messages")
	c.cmd("UIDL 1", "+OK 1 mailtest-2")
}

func TestPOP3DeleteUndone(t *testing.T) {
	tests := []struct {
		name   string
		finish func(c *pop3Client)
	}{
		{"rset", func(c *pop3Client) {
			c.cmd("RSET", "+OK maildrop has 2 messages")
			c.cmd("QUIT", "+OK")
		}},
		{"connection dropped", func(c *pop3Client) { c.conn.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startPOP3(t)
			c := dialPOP3(t, s.Addr)
			c.login()
			c.cmd("DELE 1", "+OK")
			c.cmd("DELE 2", "+OK")
			tt.finish(c)
			waitUnlocked(t, s, "alice")
			c = dialPOP3(t, s.Addr)
			c.login()
			if n := len(s.Mailbox("alice")); n != 2 {
				t.Fatalf("mailbox has %d messages, want 2", n)
			}
		})
	}
}

// waitUnlocked waits until no session holds the maildrop of user: a server
// notices a dropped connection only when its read fails.
func waitUnlocked(t *testing.T, s *POP3Server, user string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if _, ok := s.lock(user); ok {
			s.unlock(user, nil)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("maildrop of %s still locked", user)
}

func TestPOP3Errors(t *testing.T) {
	tests := []struct {
		name   string
		dialog func(c *pop3Client)
	}{
		{"unknown command", func(c *pop3Client) {
			c.cmd("XYZZ", "-ERR")
			c.cmd("HELLO", "-ERR")
			c.cmd("", "-ERR")
		}},
		{"wrong state before login", func(c *pop3Client) {
			for _, cmd := range []string{"STAT", "LIST", "RETR 1", "TOP 1 1", "UIDL", "DELE 1", "RSET", "NOOP"} {
				c.cmd(cmd, "-ERR")
			}
		}},
		{"wrong state after login", func(c *pop3Client) {
			c.login()
			for _, cmd := range []string{"USER alice", "PASS secret", "APOP alice x", "AUTH PLAIN"} {
				c.cmd(cmd, "-ERR")
			}
			c.cmd("STAT", "+OK 2")
		}},
		{"line too long", func(c *pop3Client) {
			c.cmd("USER "+strings.Repeat("a", 600), "-ERR line too long")
			c.cmd("USER "+strings.Repeat("a", 505), "+OK") // 512 octets with CRLF
			c.cmd("USER "+strings.Repeat("a", 506), "-ERR line too long")
			c.login()
		}},
		{"maildrop in use", func(c *pop3Client) {
			c.login()
			other := dialPOP3(c.t, c.conn.RemoteAddr().String())
			other.cmd("USER alice", "+OK")
			other.cmd("PASS secret", "-ERR [IN-USE]")
		}},
		{"bad password response code", func(c *pop3Client) {
			c.cmd("USER alice", "+OK")
			c.cmd("PASS nope", "-ERR [AUTH]")
			c.cmd("PASS secret", "-ERR") // USER must come again
			c.login()
		}},
	}
	s := startPOP3(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialPOP3(t, s.Addr)
			tt.dialog(c)
			c.cmd("QUIT", "+OK")
			c.expectEOF()
		})
	}
}

func TestPOP3TooManyBadCommands(t *testing.T) {
	for _, loggedIn := range []bool{false, true} {
		t.Run(fmt.Sprintf("logged in %v", loggedIn), func(t *testing.T) {
			s := startPOP3(t)
			c := dialPOP3(t, s.Addr)
			if loggedIn {
				c.login()
			}
			for range pop3MaxBad - 1 {
				c.cmd("BAD", "-ERR")
			}
			c.cmd("BAD", "-ERR unknown command")
			if got := c.line(); !strings.HasPrefix(got, "-ERR too many") {
				t.Fatalf("got %q", got)
			}
			c.expectEOF()
			// The maildrop is released and nothing was deleted.
			c = dialPOP3(t, s.Addr)
			c.login()
		})
	}
}

func TestPOP3IdleTimeout(t *testing.T) {
	s := startPOP3(t)
	s.SetIdleTimeout(100 * time.Millisecond)
	c := dialPOP3(t, s.Addr)
	c.login()
	if got := c.line(); !strings.HasPrefix(got, "-ERR idle timeout") {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
	// No UPDATE state: the maildrop is unlocked and complete.
	s.SetIdleTimeout(0)
	c = dialPOP3(t, s.Addr)
	c.login()
}

func TestPOP3CloseWithClients(t *testing.T) {
	checkGoroutines(t)
	s, err := StartPOP3(POP3Options{Users: testUsers, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c := dialPOP3(t, s.Addr)
	c.cmd("USER alice", "+OK")
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	c.expectEOF()
	if err := s.Close(); err == nil {
		t.Errorf("second Close succeeded")
	}
}

func TestNormalizeCRLF(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "a\r\n"},
		{"a\nb", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\r", "a\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"a\rb\n", "a\rb\r\n"},
	}
	for _, tt := range tests {
		if got := string(normalizeCRLF([]byte(tt.in))); got != tt.want {
			t.Errorf("normalizeCRLF(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPOP3Logins(t *testing.T) {
	s := startPOP3(t)
	c := dialPOP3(t, s.Addr)
	c.cmd("USER alice", "+OK")
	c.cmd("PASS wrong", "-ERR")
	c.cmd("APOP alice "+apopDigest(c.stamp, "secret"), "+OK")
	other := dialPOP3(t, s.Addr)
	other.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "-ERR [IN-USE]")
	want := []Login{{"alice", "USER", false}, {"alice", "APOP", true}, {"alice", "AUTH PLAIN", false}}
	if got := s.Logins(); !slices.Equal(got, want) {
		t.Errorf("Logins() = %v, want %v", got, want)
	}
}

func TestPOP3AddMessageUnknownUser(t *testing.T) {
	s := startPOP3(t)
	if err := s.AddMessage("carol", []byte("x")); err == nil || !strings.Contains(err.Error(), `no user "carol"`) {
		t.Errorf("AddMessage for an unknown user: %v", err)
	}
	if got := s.Mailbox("carol"); got != nil {
		t.Errorf("Mailbox of an unknown user = %q", got)
	}
}
