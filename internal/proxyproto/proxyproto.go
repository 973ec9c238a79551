// Package proxyproto holds both halves of the PROXY protocol (v1 and v2):
// reading the header a load balancer puts before a client's connection,
// and writing one before a backend connection. go-proxyproto parses and
// builds the headers.
package proxyproto

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// Conn is a connection that starts with a PROXY protocol header (v1 or
// v2, detected). The header is read on first use, within the timeout, in
// the session's goroutine rather than the accept loop's.
type Conn struct {
	net.Conn
	r       *bufio.Reader
	trusted bool
	timeout time.Duration

	once   sync.Once
	header *proxyproto.Header
	err    error
}

// NewConn wraps c, whose first bytes are a PROXY protocol header. trusted
// says whether the peer may set the client address (set_real_ip_from);
// timeout bounds the wait for the header.
func NewConn(c net.Conn, trusted bool, timeout time.Duration) *Conn {
	return &Conn{Conn: c, r: bufio.NewReaderSize(c, 1024), trusted: trusted, timeout: timeout}
}

// Handshake reads the header, once; its error ends the session. A header
// not read within the timeout is a timeout error (a net.Error), as a line
// not read in time is: go-proxyproto's ReadHeaderTimeout would make it
// ErrNoProxyProtocol, the error of a client that sent no header.
func (c *Conn) Handshake() error {
	c.once.Do(func() {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		c.header, c.err = proxyproto.Read(c.r)
		c.Conn.SetReadDeadline(time.Time{})
		if c.err != nil {
			c.err = fmt.Errorf("PROXY protocol header from %s: %w", c.Conn.RemoteAddr(), c.err)
		}
	})
	return c.err
}

// Read reads what follows the header.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// Announced returns the source and destination the header announced, for
// the auth service's Proxy-Protocol-* headers. A LOCAL header (a health
// check) announces none.
func (c *Conn) Announced() (src, dst net.Addr, ok bool) {
	if c.Handshake() != nil || c.header.Command.IsLocal() || c.header.SourceAddr == nil {
		return nil, nil, false
	}
	return c.header.SourceAddr, c.header.DestinationAddr, true
}

// RemoteAddr is the client: the header's source when the peer is trusted,
// else the peer itself.
func (c *Conn) RemoteAddr() net.Addr {
	if src, _, ok := c.Announced(); ok && c.trusted {
		return src
	}
	return c.Conn.RemoteAddr()
}

// Unwrap returns the raw connection and the bytes read past the header and
// not yet consumed, so that the relay can splice the raw socket.
func (c *Conn) Unwrap() (net.Conn, []byte) {
	rest, _ := c.r.Peek(c.r.Buffered())
	return c.Conn, rest
}

// WriteHeader sends a header of version 1 (text) or 2 (binary) that
// announces a connection from src to dst.
func WriteHeader(w io.Writer, version int, src, dst net.Addr) error {
	_, err := proxyproto.HeaderProxyFromAddrs(byte(version), src, dst).WriteTo(w)
	return err
}
