package engine

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

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
		served <- l.Serve(ln, func(ctx context.Context, c net.Conn) {
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
	if err := l.Serve(ln2, nil); !errors.Is(err, session.ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
	if _, err := net.Dial("tcp", ln2.Addr().String()); err == nil {
		t.Error("a listener given after Shutdown was left open")
	}
}

func TestLoopCloseEndsSessions(t *testing.T) {
	var l Loop
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go l.Serve(ln, func(ctx context.Context, c net.Conn) {
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

// active returns the number of sessions in progress.
func active(l *Loop) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
