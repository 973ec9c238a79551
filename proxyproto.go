package mailproxy

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// DefaultHeaderTimeout bounds the wait for a PROXY protocol header when
// ServerConfig.HeaderTimeout is zero, as nginx's timeout does.
const DefaultHeaderTimeout = 60 * time.Second

// RealIP says which peers may replace the client address with the one in
// their PROXY protocol header (set_real_ip_from). The zero value trusts
// none: the client address stays the peer's, and the header's is only
// reported alongside it.
type RealIP struct {
	From []netip.Prefix // trusted networks
	Unix bool           // trust peers on unix sockets ("unix:")
}

// trusts reports whether peer may set the client address.
func (r RealIP) trusts(peer net.Addr) bool {
	switch a := peer.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return false
		}
		for _, p := range r.From {
			if p.Contains(ip.Unmap()) {
				return true
			}
		}
	case *net.UnixAddr:
		return r.Unix
	}
	return false
}

// proxyConn is a connection that starts with a PROXY protocol header (v1
// or v2, detected). The header is read on first use, within the timeout,
// in the session's goroutine rather than the accept loop's; go-proxyproto
// parses it.
type proxyConn struct {
	net.Conn
	r       *bufio.Reader
	trusted bool
	timeout time.Duration

	once   sync.Once
	header *proxyproto.Header
	err    error
}

func newProxyConn(c net.Conn, realIP RealIP, timeout time.Duration) *proxyConn {
	if timeout <= 0 {
		timeout = DefaultHeaderTimeout
	}
	return &proxyConn{Conn: c, r: bufio.NewReaderSize(c, 1024), trusted: realIP.trusts(c.RemoteAddr()), timeout: timeout}
}

// Handshake reads the header, once; its error ends the session.
func (c *proxyConn) Handshake() error {
	c.once.Do(func() {
		c.header, c.err = proxyproto.ReadHeaderTimeout(c.Conn, c.r, c.timeout)
		if c.err != nil {
			c.err = fmt.Errorf("PROXY protocol header from %s: %w", c.Conn.RemoteAddr(), c.err)
		}
	})
	return c.err
}

func (c *proxyConn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// addrs returns the header's source and destination, when it has them (a
// LOCAL header, for health checks, has none).
func (c *proxyConn) addrs() (src, dst net.Addr, ok bool) {
	if c.Handshake() != nil || c.header.Command.IsLocal() || c.header.SourceAddr == nil {
		return nil, nil, false
	}
	return c.header.SourceAddr, c.header.DestinationAddr, true
}

// RemoteAddr is the client: the header's source when the peer is trusted
// (set_real_ip_from), else the peer itself.
func (c *proxyConn) RemoteAddr() net.Addr {
	if src, _, ok := c.addrs(); ok && c.trusted {
		return src
	}
	return c.Conn.RemoteAddr()
}

// ProxyAddrs returns the addresses the header announced, for the auth
// service's Proxy-Protocol-* headers.
func (c *proxyConn) ProxyAddrs() (src, dst net.Addr, ok bool) { return c.addrs() }

// Unwrap returns the raw connection and the bytes read past the header and
// not yet consumed, so that the relay can splice the raw socket.
func (c *proxyConn) Unwrap() (net.Conn, []byte) {
	rest, _ := c.r.Peek(c.r.Buffered())
	return c.Conn, rest
}
