package smtp_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// The benchmarks run every operation on both testutil.BenchSides: "direct"
// against the mailtest SMTP backend (go-smtp), and "proxy" through an
// smtp.Server in front of that same backend. Each proxy run reports its
// time per operation as a multiple of the direct runs' mean (see
// testutil.BenchRuns); run both sub-benchmarks (the default) to get it.
//
// Both sides use the same raw client (bufio over net.Conn, no SMTP
// library) and log in the same way, EHLO then AUTH PLAIN. The proxy runs
// with BackendAuth (proxy_smtp_auth), so the backend gets an AUTH PLAIN on
// both sides and does the same work: without it the proxy would introduce
// itself with EHLO alone (go-smtp has no XCLIENT) and the backend would
// skip the login that the direct side pays for.

const (
	benchUser     = "bench"
	benchPassword = "bench-secret"
	// benchDataSize is the size of the message BenchmarkData64MiB sends.
	benchDataSize = 64 << 20
	// benchMaxMessage is the backends' MaxMessageBytes. It must exceed the
	// message: go-smtp's DATA reader fails once its budget reaches zero,
	// before it sees the end of the data.
	benchMaxMessage = benchDataSize + 1<<20
	// benchTimeout bounds every benchmark connection, so that a stuck
	// server fails the run instead of hanging it.
	benchTimeout = 2 * time.Minute
)

// benchAuthPlain is the AUTH PLAIN command of the bench user, with the
// initial response.
var benchAuthPlain = "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+benchUser+"\x00"+benchPassword))

// benchEnv is a mailtest SMTP backend and a proxy in front of it.
type benchEnv struct {
	testutil.BenchAddrs
	be  *mailtest.SMTPServer
	srv *smtp.Server
}

// benchStart starts a backend that knows the bench user and takes messages
// of up to maxMessage bytes (0: mailtest's default), and a proxy whose
// auth.Static table sends that user to it. Both log nothing; close stops
// them.
func benchStart(maxMessage int64) (*benchEnv, error) {
	be, err := mailtest.StartSMTP(mailtest.SMTPOptions{
		Users:           []mailtest.User{{Name: benchUser, Password: benchPassword}},
		Domain:          "backend.bench",
		MaxMessageBytes: maxMessage,
		Logger:          testutil.Discard,
	})
	if err != nil {
		return nil, err
	}
	srv := &smtp.Server{BackendAuth: true, Config: session.Config{
		ServerName: "proxy.bench",
		Auth:       auth.Static{benchUser: {Password: benchPassword, Backend: be.Addr}},
		Logger:     testutil.Discard,
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		be.Close()
		return nil, err
	}
	go srv.Serve(ln)
	return &benchEnv{testutil.BenchAddrs{Direct: be.Addr, Proxy: ln.Addr().String()}, be, srv}, nil
}

// benchStartTB is benchStart for the whole of tb.
func benchStartTB(tb testing.TB, maxMessage int64) *benchEnv {
	tb.Helper()
	env, err := benchStart(maxMessage)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(env.close)
	return env
}

// close stops the proxy and the backend, and with it drops the messages
// the backend recorded.
func (e *benchEnv) close() {
	e.srv.Close()
	e.be.Close()
}

// benchClient is a minimal SMTP client: it writes command lines and reads
// replies, multi-line ones included.
type benchClient struct {
	conn net.Conn
	r    *bufio.Reader
}

// benchDial connects to addr and reads the 220 greeting.
func benchDial(addr string) (*benchClient, error) {
	conn, err := net.DialTimeout("tcp", addr, benchTimeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(benchTimeout))
	c := &benchClient{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	if err := c.expect("greeting", 220); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// reply reads a reply and returns its code and last line.
func (c *benchClient) reply() (int, string, error) {
	for {
		raw, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		line := string(bytes.TrimRight(raw, "\r\n"))
		if len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return 0, line, fmt.Errorf("malformed reply %q", line)
		}
		code := 0
		for _, d := range line[:3] {
			if d < '0' || d > '9' {
				return 0, line, fmt.Errorf("malformed reply %q", line)
			}
			code = code*10 + int(d-'0')
		}
		if len(line) == 3 || line[3] == ' ' {
			return code, line, nil
		}
	}
}

// expect reads a reply to what (a command, or the greeting) and fails
// unless its code is want.
func (c *benchClient) expect(what string, want int) error {
	code, line, err := c.reply()
	switch {
	case err != nil:
		return fmt.Errorf("reply to %s: %w", what, err)
	case code != want:
		return fmt.Errorf("reply to %s: %q, want %d", what, line, want)
	}
	return nil
}

// command sends a line and reads its reply, failing unless the code is
// want.
func (c *benchClient) command(line string, want int) error {
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return err
	}
	verb, _, _ := strings.Cut(line, " ")
	return c.expect(verb, want)
}

// login sends EHLO and logs in with AUTH PLAIN.
func (c *benchClient) login() error {
	if err := c.command("EHLO client.bench", 250); err != nil {
		return err
	}
	return c.command(benchAuthPlain, 235)
}

// quit sends QUIT, reads the 221 and closes.
func (c *benchClient) quit() error {
	err := c.command("QUIT", 221)
	c.conn.Close()
	return err
}

// benchSession is one operation of BenchmarkSession: connect, greeting,
// EHLO, AUTH PLAIN, QUIT.
func benchSession(addr string) error {
	c, err := benchDial(addr)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if err := c.login(); err != nil {
		return err
	}
	return c.quit()
}

// benchDataClient connects to addr and logs in: the untimed part of a
// BenchmarkData64MiB operation.
func benchDataClient(addr string) (*benchClient, error) {
	c, err := benchDial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.login(); err != nil {
		c.conn.Close()
		return nil, err
	}
	return c, nil
}

// benchSend sends msg, which must end with CRLF and have no line that
// starts with a dot, in one mail transaction: MAIL, RCPT, DATA, the data
// and the 250 reply.
func benchSend(c *benchClient, msg []byte) error {
	if err := c.command("MAIL FROM:<bench@example.org>", 250); err != nil {
		return err
	}
	if err := c.command("RCPT TO:<bench@example.org>", 250); err != nil {
		return err
	}
	if err := c.command("DATA", 354); err != nil {
		return err
	}
	if _, err := c.conn.Write(msg); err != nil {
		return err
	}
	if _, err := io.WriteString(c.conn, ".\r\n"); err != nil {
		return err
	}
	return c.expect("the data", 250)
}

// benchDataOnce runs a whole mail session on a side of env (connect, log
// in, send msg, quit) and checks that the backend recorded msg as the
// bench user's last message.
func benchDataOnce(env *benchEnv, side string, msg []byte) error {
	c, err := benchDataClient(env.Addr(side))
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if err := benchSend(c, msg); err != nil {
		return err
	}
	if err := c.quit(); err != nil {
		return err
	}
	got := env.be.Messages()
	if len(got) == 0 {
		return errors.New("the backend recorded no message")
	}
	last := got[len(got)-1]
	if !bytes.Equal(last.Data, msg) || last.AuthUser != benchUser {
		return fmt.Errorf("the backend recorded %d bytes from %q, want the %d bytes sent by %q",
			len(last.Data), last.AuthUser, len(msg), benchUser)
	}
	return nil
}

// benchRuns sets the proxy runs against the direct runs.
var benchRuns testutil.BenchRuns

// BenchmarkSession measures a short session: TCP connect, greeting, EHLO,
// AUTH PLAIN, QUIT. Through the proxy that adds the proxy's own dialogue,
// the Authenticator, the backend connection, EHLO and AUTH PLAIN there,
// and the relay of the QUIT.
func BenchmarkSession(b *testing.B) {
	env := benchStartTB(b, 0)
	benchRuns.Sessions(b, func(side string) error { return benchSession(env.Addr(side)) })
}

// BenchmarkData64MiB measures one mail transaction of a 64 MiB message:
// MAIL, RCPT, DATA, the data and the 250 reply. Connecting, EHLO, AUTH and
// QUIT are outside the timed part. For the backend the figure includes
// go-smtp's byte-at-a-time DATA reader and mailtest's io.ReadAll of the
// message, on both sides alike.
//
// The mailtest backend keeps every message in memory and cannot forget
// them, so every operation gets a fresh backend and proxy, started and
// closed outside the timed part, followed by a garbage collection: at most
// one recorded message is alive at a time, whatever b.N is.
func BenchmarkData64MiB(b *testing.B) {
	msg := testutil.BenchMessage(benchDataSize)
	// Untimed transfers on both sides first, checked byte for byte: the
	// first 64 MiB transfers pay for growing the heap and the socket
	// buffers.
	testutil.BenchWarmUp(b, 2, func(side string) error {
		env, err := benchStart(benchMaxMessage)
		if err != nil {
			return err
		}
		defer env.close()
		return benchDataOnce(env, side, msg)
	})
	runtime.GC()
	benchRuns.Transfers(b, "Data64MiB", benchDataSize, func(side string) (func() error, func(error) error, error) {
		env, err := benchStart(benchMaxMessage)
		if err != nil {
			return nil, nil, err
		}
		c, err := benchDataClient(env.Addr(side))
		if err != nil {
			env.close()
			return nil, nil, err
		}
		send := func() error { return benchSend(c, msg) }
		finish := func(err error) error {
			if err == nil {
				err = c.quit()
			}
			c.conn.Close()
			env.close()
			runtime.GC()
			return err
		}
		return send, finish, nil
	})
}

// TestBenchmarkHelpers runs every benchmark operation once on both sides
// with a small message, so that go test exercises the benchmark code.
func TestBenchmarkHelpers(t *testing.T) {
	env := benchStartTB(t, 0)
	msg := testutil.BenchMessage(5000)
	for _, side := range testutil.BenchSides {
		t.Run(side, func(t *testing.T) {
			if err := benchSession(env.Addr(side)); err != nil {
				t.Fatalf("session: %v", err)
			}
			if err := benchDataOnce(env, side, msg); err != nil {
				t.Fatalf("mail session: %v", err)
			}
			c, err := benchDataClient(env.Addr(side))
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			if err := benchSend(c, msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			if err := c.quit(); err != nil {
				t.Errorf("quit: %v", err)
			}
			// A refused command is an error, not a hang.
			c2, err := benchDial(env.Addr(side))
			if err != nil {
				t.Fatal(err)
			}
			defer c2.conn.Close()
			if err := c2.command("EHLO client.bench", 250); err != nil {
				t.Fatal(err)
			}
			wrong := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+benchUser+"\x00wrong"))
			if err := c2.command(wrong, 235); err == nil || errors.Is(err, io.EOF) {
				t.Errorf("AUTH PLAIN with a wrong password: %v, want a 535", err)
			}
		})
	}
	if n := len(env.be.Messages()); n != 4 {
		t.Errorf("the backend recorded %d messages, want 4", n)
	}
}
