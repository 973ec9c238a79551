package engine

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/session"
)

var testReplies = Replies{LineTooLong: "ERR long", TooManyCommands: "BYE commands", TooManyErrors: "BYE errors"}

// serveOne runs Conn.Run on the server side of a real TCP connection, and
// answers "ok" to a line "ok" and an error to anything else.
func serveOne(t *testing.T, cfg session.Config, maxLine int) (client net.Conn, r *bufio.Reader, done <-chan struct{}) {
	t.Helper()
	return serveWith(t, cfg, maxLine, func(c *Conn, line []byte) bool {
		if string(line) == "ok" {
			c.Reply("fine")
			return true
		}
		c.Reply("bad %q", line)
		return c.Failed()
	})
}

// serveWith runs Conn.Run on the server side of a real TCP connection,
// with command for each line, and returns the client's side.
func serveWith(t *testing.T, cfg session.Config, maxLine int, command func(c *Conn, line []byte) bool) (client net.Conn, r *bufio.Reader, done <-chan struct{}) {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	st := Settle(cfg, Protocol{MaxLine: maxLine, Replies: testReplies})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		// The listener closes once it has accepted: closed before, it
		// would reset the client's pending connection.
		nc, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer nc.Close()
		c := NewConn(nc, st, &Ending{})
		c.Run(context.Background(), func(line []byte) bool { return command(c, line) })
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { client.Close(); <-finished })
	return client, bufio.NewReader(client), finished
}

// transcript sends input, ends the client's side, and returns every line
// the server wrote before it closed the connection.
func transcript(t *testing.T, client net.Conn, r *bufio.Reader, input string) []string {
	t.Helper()
	io.WriteString(client, input)
	client.(*net.TCPConn).CloseWrite()
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return lines
		}
		lines = append(lines, strings.TrimRight(l, "\r\n"))
	}
}

func TestConnLimits(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name  string
		cfg   session.Config
		input string
		want  []string
	}{
		{"max_errors closes at the limit", session.Config{MaxErrors: 2}, "a\r\nok\r\nb\r\nok\r\n",
			[]string{`bad "a"`, "fine", `bad "b"`, "BYE errors"}},
		{"max_commands", session.Config{MaxCommands: 2}, "ok\r\nok\r\nok\r\n",
			[]string{"fine", "fine", "BYE commands"}},
		{"a long line ends the session, as nginx ends it", session.Config{}, "ok\r\n" + long + "\r\nok\r\n",
			[]string{"fine", "ERR long"}},
		{"a line that never ends is read no further", session.Config{}, "ok\r\n" + strings.Repeat(long, 100),
			[]string{"fine", "ERR long"}},
		{"bare LF and CRLF both end a line", session.Config{}, "ok\nok\r\n", []string{"fine", "fine"}},
		{"negative limits mean none", session.Config{MaxErrors: -1, MaxCommands: -1}, strings.Repeat("z\r\n", 20), repeat(`bad "z"`, 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, r, _ := serveOne(t, tt.cfg, 64)
			got := transcript(t, client, r, tt.input)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// timeout bounds the dialogue; a silent client is cut off.
func TestConnTimeout(t *testing.T) {
	_, r, done := serveOne(t, session.Config{Timeout: 100 * time.Millisecond}, 64)
	start := time.Now()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("idle session not closed")
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("connection still open")
	}
	if waited := time.Since(start); waited < 80*time.Millisecond { // the deadline started before start was taken
		t.Errorf("closed after %v, before the timeout", waited)
	}
}

// The timeout bounds the dialogue, not each read, as nginx's timer does: a
// client that keeps sending commands is closed when it runs out, but a
// login the Authenticator refused gives the client its time again, from
// the refusal.
func TestConnTimeoutBoundsDialogue(t *testing.T) {
	const timeout = time.Second
	const step = 250 * time.Millisecond
	refuse := auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
		return &auth.Result{Error: "no", Wait: time.Millisecond}, nil
	})
	tests := []struct {
		name   string
		script []string // a line every step from the start; "" sends none
		closed time.Duration
	}{
		{"commands all along", []string{"noop", "noop", "noop", "noop"}, timeout},
		{"a refused login", []string{"noop", "", "login", "", "noop", "noop"}, 2*step + timeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, r, done := serveWith(t, session.Config{Timeout: timeout, Auth: refuse}, 64, func(c *Conn, line []byte) bool {
				if string(line) == "login" {
					_, err := c.Authenticate(context.Background(), &auth.Request{Method: auth.MethodPlain, User: "u"})
					c.Reply("%s: %v", line, err != nil)
					return true
				}
				c.Reply("%s", line)
				return true
			})
			start := time.Now()
			for i, line := range tt.script {
				time.Sleep(time.Until(start.Add(time.Duration(i) * step)))
				if line == "" {
					continue
				}
				io.WriteString(client, line+"\r\n")
				if got, err := r.ReadString('\n'); !strings.HasPrefix(got, line) {
					t.Fatalf("%v: %s: %q %v", time.Duration(i)*step, line, got, err)
				}
			}
			<-done
			// Given more time at each read, the client would have had
			// timeout from its last line, three steps more.
			if took := time.Since(start); took < tt.closed-step/2 || took > tt.closed+2*step {
				t.Errorf("closed after %v, want %v", took, tt.closed)
			}
		})
	}
}

func TestConnBuffered(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	c := NewConn(b, Settle(session.Config{Logger: slog.New(slog.DiscardHandler)}, Protocol{MaxLine: 64, Replies: testReplies}), &Ending{})
	go io.WriteString(a, "first\r\npipelined bytes")
	line, err := c.ReadCommand()
	if err != nil || string(line) != "first" {
		t.Fatalf("%q %v", line, err)
	}
	if got := string(c.Buffered()); got != "pipelined bytes" && got != "" {
		t.Errorf("Buffered = %q", got)
	}
}

func TestSettleDefaults(t *testing.T) {
	got := Settle(session.Config{}, Protocol{})
	if got.Timeout != session.DefaultTimeout || got.MaxErrors != 5 || got.MaxCommands != 1000 ||
		got.ProxyTimeout != 24*time.Hour || got.ProxyBuffer != session.DefaultProxyBuffer || got.ServerName == "" || got.Logger == nil {
		t.Errorf("defaults: %+v", got)
	}
	set := Settle(session.Config{Timeout: time.Second, MaxErrors: -1, ServerName: "x"}, Protocol{})
	if set.Timeout != time.Second || set.MaxErrors != -1 || set.ServerName != "x" {
		t.Errorf("set values changed: %+v", set)
	}
}
