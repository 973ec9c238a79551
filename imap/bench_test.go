package imap_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/mailtest"
)

// The benchmarks run every operation twice: "direct" against the in-memory
// backend, and "proxy" through an imap.Server in front of that same backend.
// The direct run is the baseline: each proxy run reports its time per
// operation as a multiple of the direct runs' mean (the "x-direct" metric)
// and logs both figures. Run both sub-benchmarks (the default) to get the
// ratio; a proxy run alone reports no ratio.
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

// benchEnv is an in-memory IMAP backend and a proxy in front of it.
type benchEnv struct {
	backend string // the backend's address
	proxy   string // the proxy's address
}

// benchStart starts a backend with the bench user and a proxy whose
// auth.Static table sends that user to it. Both log nothing and stop when
// tb ends.
func benchStart(tb testing.TB) benchEnv {
	tb.Helper()
	discard := slog.New(slog.DiscardHandler)
	be, err := mailtest.StartIMAP([]mailtest.User{{Name: benchUser, Password: benchPassword}}, discard)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { be.Close() })

	srv := &imap.Server{}
	srv.Auth = auth.Static{benchUser: {Password: benchPassword, Backend: be.Addr}}
	srv.Logger = discard
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return benchEnv{backend: be.Addr, proxy: ln.Addr().String()}
}

// benchTargets are the two sides of every benchmark: the baseline first.
func (e benchEnv) benchTargets() []struct{ name, addr string } {
	return []struct{ name, addr string }{{"direct", e.backend}, {"proxy", e.proxy}}
}

// benchMessage returns a message of exactly size bytes (size ≥ 128): a
// short header and lines of 78 characters.
func benchMessage(size int) []byte {
	const header = "From: bench@example.org\r\nTo: bench@example.org\r\nSubject: bench\r\n\r\n"
	line := strings.Repeat("x", 76) + "\r\n"
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(header)
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	if rest := size - b.Len(); rest > 0 {
		b.WriteString(line[len(line)-rest:]) // ends with CRLF when rest ≥ 2
	}
	return b.Bytes()
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

// benchFetchOnce runs a whole fetch session: connect, log in, fetch
// message 1 (of want bytes), log out.
func benchFetchOnce(addr string, buf []byte, want int64) error {
	c, err := benchFetchClient(addr, buf)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	n, err := benchFetch(c)
	if err == nil && n != want {
		err = fmt.Errorf("fetched %d bytes, want %d", n, want)
	}
	if err != nil {
		return err
	}
	return c.logout()
}

// benchRuns records ns/op of every run, by benchmark and side, so that
// the proxy runs can be set against the direct runs of the same process.
var benchRuns = map[string][]float64{}

// benchRecord records the run that just ended and returns its ns/op. A
// proxy run also reports its time as a multiple of the mean of the direct
// runs so far (go test runs all -count runs of direct before proxy) and
// logs both means; rate turns ns/op into the figure named unit.
func benchRecord(b *testing.B, name, side string, ops int, unit string, rate func(nsPerOp float64) float64) float64 {
	nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(ops)
	key := name + "/" + side
	benchRuns[key] = append(benchRuns[key], nsPerOp)
	direct := benchRuns[name+"/direct"]
	if side != "proxy" || len(direct) == 0 {
		return nsPerOp
	}
	base := benchMean(direct)
	b.ReportMetric(nsPerOp/base, "x-direct")
	b.Logf("direct (mean of %d runs) %.0f ns/op, %.1f %s; proxy %.0f ns/op, %.1f %s; proxy/direct time %.3f",
		len(direct), base, rate(base), unit, nsPerOp, rate(nsPerOp), unit, nsPerOp/base)
	return nsPerOp
}

func benchMean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func benchSessionRate(nsPerOp float64) float64 { return 1e9 / nsPerOp }

func benchFetchRate(nsPerOp float64) float64 {
	return benchFetchSize / (1 << 20) / (nsPerOp / 1e9)
}

// BenchmarkSession measures a short session: TCP connect, greeting, LOGIN,
// NOOP, LOGOUT. Through the proxy that adds the proxy's own dialogue, the
// Authenticator, the backend connection and login, and the relay.
func BenchmarkSession(b *testing.B) {
	env := benchStart(b)
	// Warm both sides up, so that the first timed run is not the one that
	// pays for cold code paths and the first connections.
	for _, tg := range env.benchTargets() {
		for range 20 {
			if err := benchSession(tg.addr); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, tg := range env.benchTargets() {
		b.Run(tg.name, func(b *testing.B) {
			ops := 0
			for b.Loop() {
				if err := benchSession(tg.addr); err != nil {
					b.Fatal(err)
				}
				ops++
			}
			nsPerOp := benchRecord(b, "Session", tg.name, ops, "sessions/s", benchSessionRate)
			b.ReportMetric(benchSessionRate(nsPerOp), "sessions/s")
		})
	}
}

// BenchmarkFetch64MiB measures FETCH 1 BODY.PEEK[] of a 64 MiB message,
// read to the end. Connecting, LOGIN, EXAMINE and LOGOUT are outside the
// timed part: the figure is the transfer alone (for the backend, that
// includes go-imap's copy of the message into a buffer for every FETCH).
func BenchmarkFetch64MiB(b *testing.B) {
	env := benchStart(b)
	benchAppend(b, env.backend, benchMessage(benchFetchSize))
	buf := make([]byte, 256<<10)
	// Untimed fetches on both sides first: the first 64 MiB transfers pay
	// for growing the heap and the socket buffers.
	for _, tg := range env.benchTargets() {
		for range 3 {
			if err := benchFetchOnce(tg.addr, buf, benchFetchSize); err != nil {
				b.Fatalf("%s: %v", tg.name, err)
			}
		}
	}
	for _, tg := range env.benchTargets() {
		b.Run(tg.name, func(b *testing.B) {
			b.SetBytes(benchFetchSize)
			ops := 0
			for b.Loop() {
				b.StopTimer()
				c, err := benchFetchClient(tg.addr, buf)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				n, err := benchFetch(c)
				b.StopTimer()
				if err == nil && n != benchFetchSize {
					err = fmt.Errorf("fetched %d bytes, want %d", n, benchFetchSize)
				}
				if err == nil {
					err = c.logout()
				}
				if err != nil {
					c.conn.Close()
					b.Fatal(err)
				}
				ops++
				b.StartTimer()
			}
			benchRecord(b, "Fetch64MiB", tg.name, ops, "MiB/s", benchFetchRate)
		})
	}
}

// TestBenchmarkHelpers runs every benchmark operation once on both sides
// with a small message, so that go test exercises the benchmark code.
func TestBenchmarkHelpers(t *testing.T) {
	for _, size := range []int{128, 129, 1000, 4096} {
		if got := len(benchMessage(size)); got != size {
			t.Errorf("benchMessage(%d) is %d bytes", size, got)
		}
	}
	env := benchStart(t)
	msg := benchMessage(5000)
	benchAppend(t, env.backend, msg)
	for _, tg := range env.benchTargets() {
		t.Run(tg.name, func(t *testing.T) {
			if err := benchSession(tg.addr); err != nil {
				t.Fatalf("session: %v", err)
			}
			if err := benchFetchOnce(tg.addr, nil, int64(len(msg))); err != nil {
				t.Fatalf("fetch session: %v", err)
			}
			c, err := benchFetchClient(tg.addr, nil)
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
			c2, err := benchDial(tg.addr)
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
