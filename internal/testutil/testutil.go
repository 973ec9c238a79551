// Package testutil holds the helpers shared by the tests of every package:
// a line-oriented client for transcripts over real TCP, and bounded waits.
package testutil

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Client is a line-oriented test client on a real connection.
type Client struct {
	t    testing.TB
	Conn net.Conn
	R    *bufio.Reader
}

// Dial connects to addr ("host:port", or a unix socket path when network
// is "unix") with a ten-second deadline for the whole conversation, and
// closes the connection when the test ends.
func Dial(t testing.TB, network, addr string) *Client {
	t.Helper()
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &Client{t: t, Conn: conn, R: bufio.NewReader(conn)}
}

// Line reads one line, without its line end.
func (c *Client) Line() string {
	c.t.Helper()
	l, err := c.R.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// Send writes one line, adding CR LF.
func (c *Client) Send(format string, args ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.Conn, format+"\r\n", args...); err != nil {
		c.t.Fatal(err)
	}
}

// Cmd sends a line and returns the reply lines up to and including the
// first one that starts with until.
func (c *Client) Cmd(cmd, until string) []string {
	c.t.Helper()
	c.Send("%s", cmd)
	var lines []string
	for {
		l := c.Line()
		lines = append(lines, l)
		if strings.HasPrefix(l, until) {
			return lines
		}
	}
}

// Closed reports whether the server has closed the connection: the next
// read ends with an error rather than a line.
func (c *Client) Closed() bool {
	_, err := c.R.ReadString('\n')
	return err != nil
}

// Buffer is a bytes.Buffer that a server (its logs, a program's output)
// and the test may use at once. The zero value is empty and ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor polls cond every 10ms until it holds, failing the test after
// waitLimit.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	if !cond() {
		t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
	}
}

// waitLimit bounds WaitFor. It only catches what never happens: a loaded
// machine (Dovecot's log process writing late under a parallel test run)
// may take seconds for what takes milliseconds alone.
const waitLimit = 30 * time.Second

// Accepting reports whether a TCP connection to addr succeeds now.
func Accepting(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// FreeAddr returns a 127.0.0.1 TCP address that was free a moment ago, for
// tests that must know a listen address before the server opens it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// RefusedAddr returns an address on 127.0.0.1 where connections are
// refused until the test ends: a socket is bound there and does not
// listen, so that no other program takes the port meanwhile, as one may
// take the port of a listener closed at once.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// Exchange sends a line (nothing when send is empty; send carries its own
// line ends) and reads the lines that follow, each a prefix of the
// server's line: "…x" skips lines up to one starting with x, "<closed>"
// expects the end of the connection.
func (c *Client) Exchange(send string, expect ...string) {
	c.t.Helper()
	if send != "" {
		if _, err := io.WriteString(c.Conn, send); err != nil {
			c.t.Fatal(err)
		}
	}
	for _, want := range expect {
		c.expect(send, want)
	}
}

func (c *Client) expect(sent, want string) {
	c.t.Helper()
	if until, ok := strings.CutPrefix(want, "…"); ok {
		for l := c.Line(); !strings.HasPrefix(l, until); l = c.Line() {
		}
		return
	}
	if want == "<closed>" {
		if !c.Closed() {
			c.t.Fatalf("after %q: connection still open", sent)
		}
		return
	}
	if got := c.Line(); !strings.HasPrefix(got, want) {
		c.t.Fatalf("after %q: got %q, want %q…", sent, got, want)
	}
}

// pipeListener hands out one connection, then waits until it is closed.
type pipeListener struct {
	conn            net.Conn
	once, closeOnce sync.Once
	done            chan struct{}
}

// OneConnListener returns a listener whose Accept hands out conn once
// and then blocks until Close: a way to serve one connection, such as an
// end of a net.Pipe.
func OneConnListener(conn net.Conn) net.Listener {
	return &pipeListener{conn: conn, done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// FuzzDialogue writes input as a client over TCP on 127.0.0.1 to a
// session served by serve, then closes its writing half and reads
// everything the server answers: every command of input is read, answered
// and relayed as a client's would be. It fails if the session does not
// end within five seconds of the client's end of input. shutdown is the
// server's Shutdown.
func FuzzDialogue(t *testing.T, input string, serve func(net.Listener) error, shutdown func(context.Context) error) {
	client, server := tcpPair(t)
	defer client.Close()
	go serve(OneConnListener(server))
	client.SetDeadline(time.Now().Add(10 * time.Second))
	read := make(chan struct{})
	go func() { io.Copy(io.Discard, client); close(read) }()
	io.WriteString(client, input)
	client.CloseWrite()
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end five seconds after the client's input did")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatalf("session did not end: %v", err)
	}
}

// tcpPair returns both ends of a TCP connection on 127.0.0.1.
func tcpPair(t testing.TB) (client *net.TCPConn, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if server, err = ln.Accept(); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c.(*net.TCPConn), server
}

// StartTLS runs a TLS handshake on the connection, as a client does after
// the server's go-ahead to STARTTLS. Nothing may be buffered from the
// server beyond the go-ahead: a server that sent more in clear text fails
// the test.
func (c *Client) StartTLS(cfg *tls.Config) *tls.ConnectionState {
	c.t.Helper()
	if n := c.R.Buffered(); n > 0 {
		b, _ := c.R.Peek(n)
		c.t.Fatalf("server sent %q in clear text after the go-ahead", b)
	}
	tc := tls.Client(c.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.Conn, c.R = tc, bufio.NewReader(tc)
	state := tc.ConnectionState()
	return &state
}

// DialTLS connects to addr with implicit TLS, as Dial does.
func DialTLS(t testing.TB, addr string, cfg *tls.Config) *Client {
	t.Helper()
	c := Dial(t, "tcp", addr)
	c.StartTLS(cfg)
	return c
}
