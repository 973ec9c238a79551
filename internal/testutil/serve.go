package testutil

import (
	"log/slog"
	"net"
	"sync"
	"testing"
)

// Server is the life cycle that Serve needs, which the protocol packages'
// Server types have.
type Server interface {
	Serve(l net.Listener) error
	Close() error
}

// Serve runs srv on a fresh listener on 127.0.0.1 and returns its address;
// srv closes when the test ends.
func Serve(t testing.TB, srv Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Discard is a logger that drops everything: the default for servers
// whose logs a test does not read.
var Discard = slog.New(slog.DiscardHandler)

// Accept listens on 127.0.0.1 and runs handle in a goroutine of its own
// for every connection, until the test ends: a scripted fake server. A
// connection is closed when handle returns, or when the test ends if that
// comes first. The listener's address is the server's.
func Accept(t testing.TB, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	open := map[net.Conn]bool{} // nil once the test has ended
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if open == nil {
				mu.Unlock()
				c.Close()
				return
			}
			open[c] = true
			mu.Unlock()
			go func() {
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range open {
			c.Close()
		}
		open = nil
	})
	return ln
}
