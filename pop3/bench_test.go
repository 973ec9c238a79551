package pop3_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/pop3"
)

// The benchmarks run every operation on both testutil.BenchSides: "direct"
// against the in-memory backend, and "proxy" through a pop3.Server in
// front of that same backend. Each proxy run reports its time per
// operation as a multiple of the direct runs' mean (see
// testutil.BenchRuns); run both sub-benchmarks (the default) to get it.
//
// Both sides use the same raw client (bufio over net.Conn), so the client's
// own cost is small and equal on both sides; the backend is mailtest's
// POP3 server, whose costs are also equal on both sides. That server lets
// one session at a time hold a user's maildrop, so every operation ends
// with QUIT (which frees the maildrop before its +OK) before the next one
// starts.

const (
	benchUser     = "bench"
	benchPassword = "bench-secret"
	// benchRetrSize is the size of the message BenchmarkRetr64MiB reads.
	benchRetrSize = 64 << 20
	// benchTimeout bounds every benchmark connection, so that a stuck
	// server fails the run instead of hanging it.
	benchTimeout = 2 * time.Minute
	// benchReadBuffer is the client's read buffer for RETR.
	benchReadBuffer = 64 << 10
)

// benchEnv is an in-memory POP3 backend and a proxy in front of it.
type benchEnv struct {
	testutil.BenchAddrs
	be *mailtest.POP3Server
}

// benchStart starts a backend with the bench user and a proxy whose
// auth.Static table sends that user to it. Both log nothing and stop when
// tb ends.
func benchStart(tb testing.TB) benchEnv {
	tb.Helper()
	be, err := mailtest.StartPOP3(mailtest.POP3Options{Users: []mailtest.User{{Name: benchUser, Password: benchPassword}}, Logger: testutil.Discard})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { be.Close() })

	srv := &pop3.Server{}
	srv.Config.Auth = auth.Static{benchUser: {Password: benchPassword, Backend: be.Addr}}
	srv.Config.Logger = testutil.Discard
	return benchEnv{testutil.BenchAddrs{Direct: be.Addr, Proxy: testutil.Serve(tb, srv)}, be}
}

// benchMessage returns a message of exactly size bytes (size ≥ 68): a
// short header and lines of at most 79 characters, every one ending with
// CR LF, so that the backend stores it unchanged.
func benchMessage(size int) []byte {
	const header = "From: bench@example.org\r\nTo: bench@example.org\r\nSubject: bench\r\n\r\n"
	xs := strings.Repeat("x", 77)
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(header)
	for rest := size - b.Len(); rest > 0; rest = size - b.Len() {
		n := min(rest, 78)
		if rest == 79 {
			n = 79 // rather than 78 and a single byte that cannot end with CR LF
		}
		b.WriteString(xs[:n-2])
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// benchClient is a minimal POP3 client: it writes command lines and reads
// status lines and multi-line replies.
type benchClient struct {
	conn net.Conn
	r    *bufio.Reader
}

// benchDial connects to addr and reads the greeting. size is the read
// buffer (at least 16 bytes).
func benchDial(addr string, size int) (*benchClient, error) {
	conn, err := net.DialTimeout("tcp", addr, benchTimeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(benchTimeout))
	c := &benchClient{conn: conn, r: bufio.NewReaderSize(conn, size)}
	greeting, err := c.status()
	if err != nil || !bytes.HasPrefix(greeting, []byte("+OK")) {
		conn.Close()
		return nil, fmt.Errorf("greeting %q: %v", greeting, err)
	}
	return c, nil
}

// command sends cmd and reads its status line, failing unless it is +OK.
func (c *benchClient) command(cmd string) error {
	if _, err := io.WriteString(c.conn, cmd+"\r\n"); err != nil {
		return err
	}
	line, err := c.status()
	if err != nil {
		return fmt.Errorf("reply to %s: %w", cmd, err)
	}
	if !bytes.HasPrefix(line, []byte("+OK")) {
		return fmt.Errorf("%s: %s", cmd, bytes.TrimRight(line, "\r\n"))
	}
	return nil
}

// status reads a status line of any length and returns as much of its
// beginning as the read buffer holds.
func (c *benchClient) status() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	head := bytes.Clone(line)
	for errors.Is(err, bufio.ErrBufferFull) {
		_, err = c.r.ReadSlice('\n')
	}
	return head, err
}

// multiline reads the lines of a multi-line reply up to the terminating
// "." and returns their size with the dot-stuffing undone and line ends
// counted: for RETR, the size of the message. Lines longer than the read
// buffer come in pieces.
func (c *benchClient) multiline() (int64, error) {
	var n int64
	lineStart := true
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return n, fmt.Errorf("multi-line reply after %d bytes: %w", n, err)
		}
		if lineStart && len(line) > 0 && line[0] == '.' {
			if string(line) == ".\r\n" {
				return n, nil
			}
			line = line[1:]
		}
		n += int64(len(line))
		lineStart = err == nil
	}
}

func (c *benchClient) login() error {
	if err := c.command("USER " + benchUser); err != nil {
		return err
	}
	return c.command("PASS " + benchPassword)
}

// quit sends QUIT, reads the +OK and closes. The backend has released the
// maildrop by the time its +OK arrives.
func (c *benchClient) quit() error {
	err := c.command("QUIT")
	c.conn.Close()
	return err
}

// benchSession is one operation of BenchmarkSession: connect, greeting,
// USER, PASS, STAT, QUIT.
func benchSession(addr string) error {
	c, err := benchDial(addr, 4096)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if err := c.login(); err != nil {
		return err
	}
	if err := c.command("STAT"); err != nil {
		return err
	}
	return c.quit()
}

// benchRetrClient connects to addr with a read buffer of size and logs
// in: the untimed part of a BenchmarkRetr64MiB operation.
func benchRetrClient(addr string, size int) (*benchClient, error) {
	c, err := benchDial(addr, size)
	if err != nil {
		return nil, err
	}
	if err := c.login(); err != nil {
		c.conn.Close()
		return nil, err
	}
	return c, nil
}

// benchRetr reads message 1 whole and returns its size.
func benchRetr(c *benchClient) (int64, error) {
	if err := c.command("RETR 1"); err != nil {
		return 0, err
	}
	return c.multiline()
}

// benchRetrOp is a BenchmarkRetr64MiB operation on addr, with a read
// buffer of size. It connects and logs in (the untimed start), and returns
// the RETR of message 1 (timed) and finish (untimed), which checks that
// RETR gave want bytes and sends QUIT.
func benchRetrOp(addr string, size int, want int64) (retr func() error, finish func(error) error, err error) {
	c, err := benchRetrClient(addr, size)
	if err != nil {
		return nil, nil, err
	}
	retr, finish = testutil.BenchTransfer("RETR 1 gave", want, func() (int64, error) { return benchRetr(c) }, c.quit, c.conn.Close)
	return retr, finish, nil
}

// benchRuns sets the proxy runs against the direct runs.
var benchRuns testutil.BenchRuns

// BenchmarkSession measures a short session: TCP connect, greeting, USER,
// PASS, STAT, QUIT. Through the proxy that adds the proxy's own dialogue,
// the Authenticator, the backend connection and login, and the relay.
func BenchmarkSession(b *testing.B) {
	env := benchStart(b)
	benchRuns.Sessions(b, func(side string) error { return benchSession(env.Addr(side)) })
}

// BenchmarkRetr64MiB measures RETR 1 of a 64 MiB message, read to the
// terminating "." line. Connecting, USER, PASS and QUIT are outside the
// timed part: the figure is the transfer alone (for the backend, that
// includes mailtest's dot-stuffing of the message's lines on every RETR).
func BenchmarkRetr64MiB(b *testing.B) {
	env := benchStart(b)
	if err := env.be.AddMessage(benchUser, benchMessage(benchRetrSize)); err != nil {
		b.Fatal(err)
	}
	// Untimed reads on both sides first: the first 64 MiB transfers pay
	// for growing the heap and the socket buffers.
	testutil.BenchWarmUp(b, 3, func(side string) error {
		return testutil.BenchOnce(benchRetrOp(env.Addr(side), benchReadBuffer, benchRetrSize))
	})
	benchRuns.Transfers(b, "Retr64MiB", benchRetrSize, func(side string) (func() error, func(error) error, error) {
		return benchRetrOp(env.Addr(side), benchReadBuffer, benchRetrSize)
	})
}

// TestBenchmarkHelpers runs every benchmark operation once on both sides
// with a small message, so that go test exercises the benchmark code.
func TestBenchmarkHelpers(t *testing.T) {
	for size := 68; size < 400; size++ {
		msg := benchMessage(size)
		if len(msg) != size || !bytes.HasSuffix(msg, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\r")) {
			t.Fatalf("benchMessage(%d) is %d bytes: %q", size, len(msg), msg)
		}
	}
	env := benchStart(t)
	// Lines that start with a dot, one a lone dot, come dot-stuffed.
	msg := append([]byte(".starts with a dot\r\n.\r\n..two\r\n"), benchMessage(5000)...)
	if err := env.be.AddMessage(benchUser, msg); err != nil {
		t.Fatal(err)
	}
	if got := env.be.Mailbox(benchUser); len(got) != 1 || !bytes.Equal(got[0], msg) {
		t.Fatal("the backend changed the message")
	}
	for _, side := range testutil.BenchSides {
		t.Run(side, func(t *testing.T) {
			if err := benchSession(env.Addr(side)); err != nil {
				t.Fatalf("session: %v", err)
			}
			// 16 bytes, bufio's least: every line comes in pieces.
			for _, size := range []int{16, benchReadBuffer} {
				if err := testutil.BenchOnce(benchRetrOp(env.Addr(side), size, int64(len(msg)))); err != nil {
					t.Fatalf("RETR session with a %d-byte buffer: %v", size, err)
				}
			}
			c, err := benchRetrClient(env.Addr(side), benchReadBuffer)
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			n, err := benchRetr(c)
			if err != nil || n != int64(len(msg)) {
				t.Fatalf("RETR: %d bytes, %v; want %d", n, err, len(msg))
			}
			// The backend lets one session hold the maildrop: a second
			// login waits for QUIT.
			if err := benchSession(env.Addr(side)); err == nil {
				t.Error("a second session logged in while the first held the maildrop")
			}
			if err := c.quit(); err != nil {
				t.Errorf("QUIT: %v", err)
			}
			if err := benchSession(env.Addr(side)); err != nil {
				t.Errorf("session after QUIT: %v", err)
			}
			// A refused command is an error, not a hang.
			c2, err := benchDial(env.Addr(side), 4096)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.conn.Close()
			if err := c2.command("USER " + benchUser); err != nil {
				t.Fatal(err)
			}
			if err := c2.command("PASS wrong"); err == nil || errors.Is(err, io.EOF) {
				t.Errorf("PASS with a wrong password: %v, want an -ERR", err)
			}
		})
	}
}
