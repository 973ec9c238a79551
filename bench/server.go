package main

import (
	"errors"
	"net"
	"sync"
	"time"
)

// server accepts on its listeners and serves each connection from a
// goroutine of its own; Close stops it all. The backends and the auth
// service are servers.
type server struct {
	lns   []net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{} // nil once closed
}

// serve accepts on ln until it is closed, calling handle for each
// connection, which is closed when handle returns.
func (s *server) serve(ln net.Listener, handle func(net.Conn)) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				// Out of descriptors, as the idle scenario may be: wait.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
		}
	}()
}

// track records c, unless the server is closed.
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// addrs returns the addresses of the listeners.
func (s *server) addrs() []string {
	var a []string
	for _, ln := range s.lns {
		a = append(a, ln.Addr().String())
	}
	return a
}

// Close stops the listeners, closes every connection and waits for
// their goroutines.
func (s *server) Close() {
	s.mu.Lock()
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}
