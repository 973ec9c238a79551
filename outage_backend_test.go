package mailproxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// The bounds of the backend outage test.
const (
	// backendTimeout is the servers' timeout, which bounds the backend
	// login as it bounds every wait before the relay.
	backendTimeout = 2 * time.Second
	// quickAnswer bounds an answer that no timeout holds up.
	quickAnswer = backendTimeout / 2
	// endlessBytes is what an endless greeting offers: far more than the
	// socket buffers of both ends hold.
	endlessBytes = 64 << 20
	// greetingMemory bounds what the proxy may allocate while an endless
	// greeting is offered.
	greetingMemory = 2 << 20
)

// backendDialect is how a fake backend of one protocol greets and
// accepts the proxy's login.
type backendDialect struct {
	greeting string
	// logins is the number of commands the proxy logs in with.
	logins int
	// ok accepts one of them.
	ok func(cmd string) string
}

var backendDialects = map[string]backendDialect{
	"imap": {greeting: "* OK fake ready", logins: 1, ok: func(cmd string) string {
		tag, _, _ := strings.Cut(cmd, " ")
		return tag + " OK Logged in"
	}},
	"pop3": {greeting: "+OK fake ready", logins: 2, ok: func(string) string { return "+OK" }},
	"smtp": {greeting: "220 fake.test ESMTP", logins: 1, ok: func(string) string { return "250 fake.test" }},
}

// fakeBackend is one connection's view of a misbehaving backend.
type fakeBackend struct {
	d    backendDialect
	conn net.Conn
	r    *bufio.Reader
	// sent counts the bytes of an endless greeting the kernel took.
	sent *atomic.Int64
}

func (b *fakeBackend) send(s string) error {
	_, err := io.WriteString(b.conn, s)
	return err
}

// read reads one command line.
func (b *fakeBackend) read() (string, error) {
	l, err := b.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// logIn greets and accepts the proxy's login.
func (b *fakeBackend) logIn() error {
	if err := b.send(b.d.greeting + "\r\n"); err != nil {
		return err
	}
	for range b.d.logins {
		cmd, err := b.read()
		if err != nil {
			return err
		}
		if err := b.send(b.d.ok(cmd) + "\r\n"); err != nil {
			return err
		}
	}
	return nil
}

// reset ends the connection with a TCP reset.
func (b *fakeBackend) reset() {
	b.conn.(*net.TCPConn).SetLinger(0)
	b.conn.Close()
}

// drain reads until the proxy closes the connection.
func (b *fakeBackend) drain() { io.Copy(io.Discard, b.r) }

// backendOutage is one way for a backend to fail.
type backendOutage struct {
	name string
	// serve is the backend's side of a connection; nil when nothing
	// listens. It returns once the proxy has closed the connection,
	// unless it closed it first (reset).
	serve func(b *fakeBackend)
	// waits: the client's error comes when the timeout expires.
	waits bool
	// relayed: the login succeeds, the backend fails during the relay.
	relayed bool
	// measured: the login runs alone, its allocations are counted, and
	// so is what the backend sent.
	measured bool
}

var backendOutages = []backendOutage{
	{name: "refused"},
	{name: "silent", waits: true, serve: func(b *fakeBackend) { b.drain() }},
	{name: "reset during login", serve: func(b *fakeBackend) {
		if b.send(b.d.greeting+"\r\n") == nil {
			b.read()
		}
		b.reset()
	}},
	{name: "reset during relay", relayed: true, serve: func(b *fakeBackend) {
		if b.logIn() == nil {
			b.read() // the client's first command after the login
		}
		b.reset()
	}},
	{name: "endless greeting, slow", waits: true, serve: func(b *fakeBackend) {
		// The start of a greeting, then a byte every 20ms, never a line end.
		if b.send(b.d.greeting[:4]) != nil {
			return
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if b.send("x") != nil {
				return
			}
		}
	}},
	{name: "endless greeting, megabytes", measured: true, serve: func(b *fakeBackend) {
		if b.send(b.d.greeting[:4]) != nil {
			return
		}
		chunk := []byte(strings.Repeat("x", 64<<10))
		for b.sent.Load() < endlessBytes {
			n, err := b.conn.Write(chunk)
			b.sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		b.drain()
	}},
	{name: "garbage to the login", serve: func(b *fakeBackend) {
		if b.send(b.d.greeting+"\r\n") != nil {
			return
		}
		if _, err := b.read(); err != nil {
			return
		}
		b.send("\x00\x01\xff\xfe garbage\r\nHTTP/1.1 400 Bad Request\r\n\r\n\x16\x03\x01")
		b.drain()
	}},
}

// Backends fail in every way backends fail: the client gets its
// protocol's temporary error (IMAP "NO [UNAVAILABLE]", POP3 "-ERR
// [SYS/TEMP]", SMTP "451 4.3.0") at once, or when the timeout expires for
// a backend that keeps it waiting; the proxy closes the backend's
// connection, the session stays open and ends cleanly; an endless
// greeting costs a bounded amount of memory; a backend that resets during
// the relay ends the client's connection at once. No goroutine or
// descriptor is left.
func TestBackendOutage(t *testing.T) {
	noLeaks(t)
	for _, o := range backendOutages {
		t.Run(o.name, func(t *testing.T) {
			for _, proto := range outageProtocols {
				t.Run(proto.name, func(t *testing.T) {
					if !o.measured {
						t.Parallel()
					}
					testBackendOutage(t, o, proto)
				})
			}
		})
	}
}

func testBackendOutage(t *testing.T, o backendOutage, proto outageProtocol) {
	backend := testutil.RefusedAddr(t)
	closed := make(chan struct{}, 1)
	var sent atomic.Int64
	if o.serve != nil {
		backend = testutil.Accept(t, func(c net.Conn) {
			o.serve(&fakeBackend{d: backendDialects[proto.name], conn: c, r: bufio.NewReader(c), sent: &sent})
			closed <- struct{}{}
		}).Addr().String()
	}
	route := auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
		return &auth.Result{Backend: backend}, nil
	})
	addr := startOutageProxy(t, proto, nil, session.Config{Auth: route, Timeout: backendTimeout, Logger: testutil.Discard})[0]

	c, err := proto.dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	if o.measured {
		runtime.GC()
		runtime.ReadMemStats(&before)
	}
	start := time.Now()
	err = c.Login(outageUser(0), outagePassword)
	took := time.Since(start)
	if o.measured {
		runtime.ReadMemStats(&after)
	}

	if o.relayed {
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		start = time.Now()
		err = c.Command()
		took = time.Since(start)
		c.Quit() // fails: it closes the client's end
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() || took > quickAnswer {
			t.Fatalf("the command after the login: %v after %v, want the end of the connection at once", err, took)
		}
		t.Logf("%s: the client's connection ended %v after its command (%v)", t.Name(), took.Round(100*time.Microsecond), err)
		return
	}
	switch {
	case !proto.temporary(err):
		t.Fatalf("login answered %v, want the temporary error", err)
	case o.waits && (took < backendTimeout || took > backendTimeout+timeMargin):
		t.Errorf("temporary error after %v, want it when the timeout of %v expires", took, backendTimeout)
	case !o.waits && took > quickAnswer:
		t.Errorf("temporary error after %v, want it at once", took)
	}
	if o.serve != nil {
		select {
		case <-closed:
		case <-time.After(clientDeadline):
			t.Errorf("the proxy did not close its connection to the backend")
		}
	}
	if err := c.Quit(); err != nil {
		t.Errorf("the session did not end cleanly: %v", err)
	}
	msg := t.Name() + ": temporary error after " + took.Round(100*time.Microsecond).String()
	if o.measured {
		sent, allocated := sent.Load(), after.TotalAlloc-before.TotalAlloc
		if sent >= endlessBytes {
			t.Errorf("the proxy read the endless greeting on to its end (%d bytes)", sent)
		}
		if allocated > greetingMemory {
			t.Errorf("the proxy allocated %d bytes while the backend sent %d", allocated, sent)
		}
		msg += fmt.Sprintf(", %.0f KiB allocated while the backend sent %.1f MiB without a line end", float64(allocated)/(1<<10), float64(sent)/(1<<20))
	}
	t.Log(msg)
}
