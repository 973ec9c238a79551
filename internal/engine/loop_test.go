package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

func TestLoopLifeCycle(t *testing.T) {
	var l Loop
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		served <- l.Serve(ln, discard, func(ctx context.Context, c net.Conn, _ *Ending) {
			select {
			case <-release:
			case <-ctx.Done():
			}
		})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; active(&l) != 1; i++ {
		if i > 500 {
			t.Fatal("session not started")
		}
		time.Sleep(10 * time.Millisecond)
	}

	shut := make(chan error, 1)
	go func() { shut <- l.Shutdown(context.Background()) }()
	if err := <-served; !errors.Is(err, session.ErrServerClosed) {
		t.Errorf("Serve = %v, want session.ErrServerClosed", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a session running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if active(&l) != 0 {
		t.Errorf("%d sessions after Shutdown", active(&l))
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := l.Serve(ln2, discard, nil); !errors.Is(err, session.ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
	if _, err := net.Dial("tcp", ln2.Addr().String()); err == nil {
		t.Error("a listener given after Shutdown was left open")
	}
}

func TestLoopCloseEndsSessions(t *testing.T) {
	var l Loop
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go l.Serve(ln, discard, func(ctx context.Context, c net.Conn, _ *Ending) {
		buf := make([]byte, 1)
		c.Read(buf) // returns when Close closes the connection
	})
	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	for active(&l) != 1 {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the session")
	}
}

// A session whose handler detached its end stays in progress after the
// handler returns: Shutdown waits for it, and its end, in a goroutine of
// its own, runs the steps added and closes the connection.
func TestLoopDetachedSession(t *testing.T) {
	var l Loop
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ends := make(chan func(), 1)
	var order []string
	go l.Serve(ln, discard, func(ctx context.Context, c net.Conn, end *Ending) {
		end.Defer(func() { order = append(order, "first added") })
		end.Defer(func() { order = append(order, "last added") })
		ends <- end.Detach()
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	end := <-ends
	time.Sleep(20 * time.Millisecond) // the handler has returned
	if active(&l) != 1 {
		t.Fatalf("%d sessions in progress after the handler returned, want the detached one", active(&l))
	}
	shut := make(chan error, 1)
	go func() { shut <- l.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a detached session in progress", err)
	case <-time.After(50 * time.Millisecond):
	}
	go end()
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if want := []string{"last added", "first added"}; !slices.Equal(order, want) {
		t.Errorf("steps ran %q, want %q", order, want)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a session that ended, want EOF", n)
	}
}

// active returns the number of sessions in progress.
func active(l *Loop) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

var discard = slog.New(slog.DiscardHandler)

// flakyListener fails its first accepts with errs, then accepts from the
// listener it wraps.
type flakyListener struct {
	net.Listener
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	return f.Listener.Accept()
}

// Descriptors running out pause the accept loop and it goes on; a socket
// that can accept no more ends it with its error.
func TestLoopRetriesAcceptErrors(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var l Loop
	defer l.Close()
	served := make(chan struct{})
	go l.Serve(&flakyListener{ln, []error{emfile, emfile, emfile}}, discard, func(ctx context.Context, c net.Conn, _ *Ending) { close(served) })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("no session after three EMFILE errors")
	}

	ebadf := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EBADF)}
	if err := l.Serve(&flakyListener{ln, []error{ebadf}}, discard, nil); !errors.Is(err, syscall.EBADF) {
		t.Errorf("Serve after EBADF = %v, want EBADF", err)
	}
}

// A handler that panics ends its own session: the connection is closed,
// its slot given back, the panic logged with its stack at alert, and the
// other sessions and the accept loop go on.
func TestLoopPanickingHandler(t *testing.T) {
	var l Loop
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.Buffer
	log := slog.New(errorlog.NewHandler(&logs, &errorlog.HandlerOptions{Level: errorlog.LevelAlert}))
	released := make(chan string, 2)
	go l.Serve(ln, log, func(ctx context.Context, c net.Conn, end *Ending) {
		end.Defer(func() { released <- "slot" })
		var line [16]byte
		n, _ := c.Read(line[:])
		if string(line[:n]) == "panic\n" {
			var served []int
			served[n]++ // a runtime error, as a bug would make
		}
		c.Write([]byte("served\n"))
	})
	for _, say := range []string{"panic\n", "hello\n"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(say))
		got, err := io.ReadAll(c)
		c.Close()
		switch {
		case err != nil:
			t.Fatalf("after %q: %v", say, err)
		case say == "panic\n" && len(got) != 0, say == "hello\n" && string(got) != "served\n":
			t.Fatalf("after %q the client read %q", say, got)
		}
		if what := <-released; what != "slot" {
			t.Fatal(what)
		}
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := logs.String()
	if !strings.Contains(lines, "[alert]") || !strings.Contains(lines, "panic serving a session") ||
		!strings.Contains(lines, "index out of range [6] with length 0") || !strings.Contains(lines, "TestLoopPanickingHandler") {
		t.Errorf("the log lacks the panic, its value or its stack:\n%s", lines)
	}
	if strings.Count(lines, "panic serving") != 1 {
		t.Errorf("want one panic logged:\n%s", lines)
	}
}
