package testutil

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
)

// ConnCounter counts the connections open to an HTTP test server: how a
// test sees that a client closed the connections it kept.
type ConnCounter struct {
	mu   sync.Mutex
	open map[net.Conn]bool
}

// Track counts srv's connections; srv is not started yet.
func (c *ConnCounter) Track(srv *httptest.Server) {
	srv.Config.ConnState = func(conn net.Conn, s http.ConnState) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch s {
		case http.StateNew:
			if c.open == nil {
				c.open = map[net.Conn]bool{}
			}
			c.open[conn] = true
		case http.StateClosed, http.StateHijacked:
			delete(c.open, conn)
		}
	}
}

// Open returns the number of connections open now.
func (c *ConnCounter) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}
