package testutil

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Script is what a fake backend says, for tests that need a backend to
// misbehave or to show what the proxy sent it.
type Script struct {
	// Greeting is sent, with CR LF, to every connection as it opens;
	// empty sends nothing.
	Greeting string
	// Literals reads each command with its IMAP literals ({n} and {n+}),
	// answering "+ go ahead" to the synchronising ones.
	Literals bool
	// Answer answers one command: its line without the line end (with
	// Literals, the literals and the line ends between them are part of
	// it). A nil Answer hangs up after the greeting, as a server that
	// refuses the session does.
	Answer func(c *FakeConn, cmd string)
}

// FakeBackend is a scripted backend on 127.0.0.1: it greets every
// connection, answers each command by its Script, and records the
// commands it read.
type FakeBackend struct {
	// Addr is where it listens.
	Addr string

	script   Script
	mu       sync.Mutex
	commands []string
}

// StartFake starts a fake backend that follows s until the test ends,
// when it closes its listener and every connection still open.
func StartFake(t testing.TB, s Script) *FakeBackend {
	t.Helper()
	b := &FakeBackend{script: s}
	b.Addr = Accept(t, b.serve).Addr().String()
	return b
}

// Received returns the commands read so far, from every connection, in
// the form Answer gets them; a command cut short by the end of its
// connection is there too.
func (b *FakeBackend) Received() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.commands...)
}

func (b *FakeBackend) serve(nc net.Conn) {
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &FakeConn{conn: nc, r: bufio.NewReader(nc)}
	if b.script.Greeting != "" {
		c.Reply(b.script.Greeting)
	}
	if b.script.Answer == nil {
		return
	}
	for {
		cmd, err := c.command(b.script.Literals)
		if err == nil || cmd != "" {
			b.mu.Lock()
			b.commands = append(b.commands, cmd)
			b.mu.Unlock()
		}
		if err != nil {
			return
		}
		b.script.Answer(c, cmd)
	}
}

// FakeConn is one connection to a FakeBackend, as its Script's Answer
// sees it.
type FakeConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// Reply sends lines, each with CR LF, in one write.
func (c *FakeConn) Reply(lines ...string) {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	io.WriteString(c.conn, b.String())
}

// ReadLine reads one line, without its line end, that the Script reads
// itself rather than as a command: the lines of an SMTP message after
// DATA.
func (c *FakeConn) ReadLine() (string, error) {
	l, err := c.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// Close hangs up: the backend reads no more commands on c.
func (c *FakeConn) Close() error { return c.conn.Close() }

// command reads one command line, with its literals when literals is
// set, and returns it without its final line end.
func (c *FakeConn) command(literals bool) (string, error) {
	var cmd strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			cmd.WriteString(line)
			return cmd.String(), err
		}
		n, sync, ok := literalAt(line)
		if !literals || !ok {
			cmd.WriteString(strings.TrimRight(line, "\r\n"))
			return cmd.String(), nil
		}
		cmd.WriteString(line)
		if sync {
			c.Reply("+ go ahead")
		}
		lit := make([]byte, n)
		k, err := io.ReadFull(c.r, lit)
		cmd.Write(lit[:k])
		if err != nil {
			return cmd.String(), err
		}
	}
}

// literalAt reports the literal that ends line ("{n}" or "{n+}" before
// CR LF): its size, and whether it is synchronising.
func literalAt(line string) (n int, sync, ok bool) {
	rest, found := strings.CutSuffix(line, "}\r\n")
	open := strings.LastIndexByte(rest, '{')
	if !found || open < 0 {
		return 0, false, false
	}
	spec, nonSync := strings.CutSuffix(rest[open+1:], "+")
	n, err := strconv.Atoi(spec)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, !nonSync, true
}
