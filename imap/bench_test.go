package imap_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
)

// The benchmarks run every operation on both testutil.BenchSides: "direct"
// against the in-memory backend, and "proxy" through an imap.Server in
// front of that same backend. Each proxy run reports its time per
// operation as a multiple of the direct runs' mean (see
// testutil.BenchRuns); run both sub-benchmarks (the default) to get it.
//
// Both sides use the same raw client (bufio over net.Conn, no IMAP library),
// so the client's own cost is small and equal on both sides; the backend is
// go-imap's imapmemserver, whose costs are also equal on both sides.

const (
	benchUser     = "bench"
	benchPassword = "bench-secret"
	// benchFetchSize is the size of the message BenchmarkFetch64MiB fetches.
	benchFetchSize = 64 << 20
	// benchTimeout bounds every benchmark connection, so that a stuck
	// server fails the run instead of hanging it.
	benchTimeout = 2 * time.Minute
)

// benchStart starts a backend with the bench user and a proxy whose
// auth.Static table sends that user to it. Both log nothing and stop when
// tb ends.
func benchStart(tb testing.TB) testutil.BenchAddrs {
	tb.Helper()
	be, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: benchUser, Password: benchPassword}}, Logger: testutil.Discard})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { be.Close() })

	srv := &imap.Server{}
	srv.Config.Auth = auth.Static{benchUser: {Password: benchPassword, Backend: be.Addr}}
	srv.Config.Logger = testutil.Discard
	return testutil.BenchAddrs{Direct: be.Addr, Proxy: testutil.Serve(tb, srv)}
}

// benchAppend stores msg in the bench user's INBOX through imapclient.
func benchAppend(tb testing.TB, addr string, msg []byte) {
	tb.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(benchUser, benchPassword).Wait(); err != nil {
		tb.Fatalf("login: %v", err)
	}
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := cmd.Write(msg); err != nil {
		tb.Fatalf("append: %v", err)
	}
	if err := cmd.Close(); err != nil {
		tb.Fatalf("append: %v", err)
	}
	if _, err := cmd.Wait(); err != nil {
		tb.Fatalf("append: %v", err)
	}
	if err := c.Logout().Wait(); err != nil {
		tb.Fatalf("logout: %v", err)
	}
}

// benchClient is a minimal IMAP client: it writes command lines and reads
// replies up to the tagged status, draining (and counting) literals.
type benchClient struct {
	conn net.Conn
	r    *bufio.Reader
	tags int
	buf  []byte // scratch for literals; nil means a small one on demand
}

// benchDial connects to addr and reads the greeting.
func benchDial(addr string) (*benchClient, error) {
	conn, err := net.DialTimeout("tcp", addr, benchTimeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(benchTimeout))
	c := &benchClient{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	greeting, err := c.r.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(greeting, []byte("* OK")) {
		conn.Close()
		return nil, fmt.Errorf("greeting %q: %v", greeting, err)
	}
	return c, nil
}

// command sends cmd and reads its reply, failing unless it is OK. It
// returns the number of literal bytes in the reply.
func (c *benchClient) command(cmd string) (int64, error) {
	c.tags++
	tag := "b" + strconv.Itoa(c.tags)
	if _, err := io.WriteString(c.conn, tag+" "+cmd+"\r\n"); err != nil {
		return 0, err
	}
	return c.reply(tag)
}

// reply reads untagged lines, with the literals they end with, up to the
// line tagged tag.
func (c *benchClient) reply(tag string) (int64, error) {
	var literals int64
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return literals, fmt.Errorf("reply to %s: %w", tag, err)
		}
		if status, ok := bytes.CutPrefix(line, []byte(tag+" ")); ok {
			if !bytes.HasPrefix(status, []byte("OK")) {
				return literals, fmt.Errorf("%s %s", tag, bytes.TrimRight(status, "\r\n"))
			}
			return literals, nil
		}
		if n, ok := benchLiteral(line); ok {
			if err := c.drain(n); err != nil {
				return literals, err
			}
			literals += n
		}
	}
}

// benchLiteral returns the size of the literal a reply line announces
// ("… {1234}\r\n").
func benchLiteral(line []byte) (int64, bool) {
	rest, ok := bytes.CutSuffix(line, []byte("}\r\n"))
	if !ok {
		return 0, false
	}
	open := bytes.LastIndexByte(rest, '{')
	if open < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest[open+1:]), 10, 64)
	return n, err == nil && n >= 0
}

// drain reads and drops n bytes. Reads as large as c.buf go straight from
// the socket once the bufio buffer is empty.
func (c *benchClient) drain(n int64) error {
	if c.buf == nil {
		c.buf = make([]byte, 32<<10)
	}
	for n > 0 {
		k, err := c.r.Read(c.buf[:min(int64(len(c.buf)), n)])
		n -= int64(k)
		if err != nil {
			return fmt.Errorf("literal: %d bytes short: %w", n, err)
		}
	}
	return nil
}

func (c *benchClient) login() error {
	_, err := c.command("LOGIN " + benchUser + " " + benchPassword)
	return err
}

// logout sends LOGOUT, reads the BYE and the OK, and closes.
func (c *benchClient) logout() error {
	_, err := c.command("LOGOUT")
	c.conn.Close()
	return err
}

// benchSession is one operation of BenchmarkSession: connect, greeting,
// LOGIN, NOOP, LOGOUT.
func benchSession(addr string) error {
	c, err := benchDial(addr)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if err := c.login(); err != nil {
		return err
	}
	if _, err := c.command("NOOP"); err != nil {
		return err
	}
	return c.logout()
}

// benchFetchClient connects to addr, logs in and opens INBOX read-only:
// the untimed part of a BenchmarkFetch64MiB operation.
func benchFetchClient(addr string, buf []byte) (*benchClient, error) {
	c, err := benchDial(addr)
	if err != nil {
		return nil, err
	}
	c.buf = buf
	if err := c.login(); err != nil {
		c.conn.Close()
		return nil, err
	}
	if _, err := c.command("EXAMINE INBOX"); err != nil {
		c.conn.Close()
		return nil, err
	}
	return c, nil
}

// benchFetch fetches message 1 whole and returns the size of its body.
func benchFetch(c *benchClient) (int64, error) {
	return c.command("FETCH 1 BODY.PEEK[]")
}

// benchFetchOp is a BenchmarkFetch64MiB operation on addr. It connects,
// logs in and opens INBOX (the untimed start), and returns the fetch of
// message 1 (timed) and finish (untimed), which checks that the fetch gave
// want bytes and logs out.
func benchFetchOp(addr string, buf []byte, want int64) (fetch func() error, finish func(error) error, err error) {
	c, err := benchFetchClient(addr, buf)
	if err != nil {
		return nil, nil, err
	}
	fetch, finish = testutil.BenchTransfer("fetched", want, func() (int64, error) { return benchFetch(c) }, c.logout, c.conn.Close)
	return fetch, finish, nil
}

// benchRuns sets the proxy runs against the direct runs.
var benchRuns testutil.BenchRuns

// BenchmarkSession measures a short session: TCP connect, greeting, LOGIN,
// NOOP, LOGOUT. Through the proxy that adds the proxy's own dialogue, the
// Authenticator, the backend connection and login, and the relay.
func BenchmarkSession(b *testing.B) {
	env := benchStart(b)
	benchRuns.Sessions(b, func(side string) error { return benchSession(env.Addr(side)) })
}

// BenchmarkFetch64MiB measures FETCH 1 BODY.PEEK[] of a 64 MiB message,
// read to the end. Connecting, LOGIN, EXAMINE and LOGOUT are outside the
// timed part: the figure is the transfer alone (for the backend, that
// includes go-imap's copy of the message into a buffer for every FETCH).
func BenchmarkFetch64MiB(b *testing.B) {
	env := benchStart(b)
	benchAppend(b, env.Direct, testutil.BenchMessage(benchFetchSize))
	buf := make([]byte, 256<<10)
	// Untimed fetches on both sides first: the first 64 MiB transfers pay
	// for growing the heap and the socket buffers.
	testutil.BenchWarmUp(b, 3, func(side string) error {
		return testutil.BenchOnce(benchFetchOp(env.Addr(side), buf, benchFetchSize))
	})
	benchRuns.Transfers(b, "Fetch64MiB", benchFetchSize, func(side string) (func() error, func(error) error, error) {
		return benchFetchOp(env.Addr(side), buf, benchFetchSize)
	})
}

// TestBenchmarkHelpers runs every benchmark operation once on both sides
// with a small message, so that go test exercises the benchmark code.
func TestBenchmarkHelpers(t *testing.T) {
	env := benchStart(t)
	msg := testutil.BenchMessage(5000)
	benchAppend(t, env.Direct, msg)
	for _, side := range testutil.BenchSides {
		t.Run(side, func(t *testing.T) {
			if err := benchSession(env.Addr(side)); err != nil {
				t.Fatalf("session: %v", err)
			}
			if err := testutil.BenchOnce(benchFetchOp(env.Addr(side), nil, int64(len(msg)))); err != nil {
				t.Fatalf("fetch session: %v", err)
			}
			c, err := benchFetchClient(env.Addr(side), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			n, err := benchFetch(c)
			if err != nil || n != int64(len(msg)) {
				t.Fatalf("fetch: %d bytes, %v; want %d", n, err, len(msg))
			}
			if err := c.logout(); err != nil {
				t.Errorf("logout: %v", err)
			}
			// A refused command is an error, not a hang.
			c2, err := benchDial(env.Addr(side))
			if err != nil {
				t.Fatal(err)
			}
			defer c2.conn.Close()
			if _, err := c2.command("LOGIN " + benchUser + " wrong"); err == nil || errors.Is(err, io.EOF) {
				t.Errorf("LOGIN with a wrong password: %v, want a NO", err)
			}
		})
	}
}
