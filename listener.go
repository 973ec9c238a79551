package mailproxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailproxy/mailproxy/session"
)

// Listener is what a [Proxy] passes to a [Server]: the connections
// accepted for one listen directive, which knows its parameters.
//
// It is a session.Listener, the interface through which the protocol
// servers learn how the connections start: with a PROXY protocol header
// (ProxyProtocol) or a TLS handshake (ImplicitTLS). The connections are
// handed out as accepted, and the Server reads the header and runs the
// handshake with its own settings (RealIP, TLS) in the session. Any
// net.Listener can be served by a Server; a plain one serves plain
// connections.
type Listener interface {
	session.Listener
	// ListenConfig returns the parameters of the listen directive.
	ListenConfig() ListenConfig
}

// Switch is an on/off option whose zero value leaves the system default.
type Switch int8

// Switch values.
const (
	Default Switch = iota // the system's (or nginx's) default
	On
	Off
)

// ListenConfig holds the parameters of one listen directive.
type ListenConfig struct {
	// Address is the address as nginx writes it: "110", "*:110",
	// "127.0.0.1:110", "localhost:110" (every address of the name),
	// "[::1]:110", "[::]:110" or "unix:/path".
	Address string

	SSL           bool // implicit TLS on this port
	ProxyProtocol bool // connections start with a PROXY protocol header

	// Backlog is the listen queue length; zero means the system maximum
	// (net.core.somaxconn).
	Backlog int
	// RcvBuf and SndBuf set SO_RCVBUF and SO_SNDBUF when not zero.
	RcvBuf, SndBuf int
	// Bind asks for a socket of its own even when a wildcard listen on
	// the same port could serve this address.
	Bind bool
	// IPv6Only sets IPV6_V6ONLY on a wildcard IPv6 socket; Default is On,
	// as in nginx.
	IPv6Only Switch
	// ReusePort sets SO_REUSEPORT.
	ReusePort bool
	// KeepAlive sets SO_KEEPALIVE; Default leaves the system's setting
	// (off), and so do zero KeepIdle, KeepIntvl and KeepCnt for their
	// options. Setting any of those three turns keepalive on.
	KeepAlive Switch
	KeepIdle  time.Duration // TCP_KEEPIDLE
	KeepIntvl time.Duration // TCP_KEEPINTVL
	KeepCnt   int           // TCP_KEEPCNT
	// Multipath accepts Multipath TCP connections (Linux 5.6 and later;
	// plain TCP elsewhere).
	Multipath bool
}

// socketOptions reports whether lc sets an option of the socket itself, which
// needs a socket of its own (as nginx makes a separate bind for them).
func (lc ListenConfig) socketOptions() bool {
	return lc.Bind || lc.Backlog != 0 || lc.RcvBuf != 0 || lc.SndBuf != 0 ||
		lc.IPv6Only != Default || lc.ReusePort || lc.keepAliveSet() || lc.Multipath
}

func (lc ListenConfig) keepAliveSet() bool {
	return lc.KeepAlive != Default || lc.KeepIdle != 0 || lc.KeepIntvl != 0 || lc.KeepCnt != 0
}

// Endpoint is one socket address a listen directive stands for.
type Endpoint struct {
	Network string // "tcp4", "tcp6" or "unix"
	Address string // "127.0.0.1:110", "[::]:110", "/path"
}

func (e Endpoint) String() string {
	if e.Network == "unix" {
		return "unix:" + e.Address
	}
	return e.Address
}

// key identifies the socket of e among a Proxy's sockets and the inherited
// ones.
func (e Endpoint) key() string {
	return e.Network + " " + e.Address
}

// Port returns the TCP port of e, or -1 for a unix socket.
func (e Endpoint) Port() int {
	_, port, err := net.SplitHostPort(e.Address)
	if e.Network == "unix" || err != nil {
		return -1
	}
	n, _ := strconv.Atoi(port)
	return n
}

// wildcard reports whether e listens on every address of its family.
func (e Endpoint) wildcard() bool {
	host, _, _ := net.SplitHostPort(e.Address)
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// Endpoints resolves lc.Address into the socket addresses to listen on. A
// host name gives one endpoint for each of its addresses.
func (lc ListenConfig) Endpoints(ctx context.Context) ([]Endpoint, error) {
	addr := lc.Address
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("listen %q: empty unix socket path", addr)
		}
		return []Endpoint{{Network: "unix", Address: path}}, nil
	}
	host, port, err := splitListenAddress(addr)
	if err != nil {
		return nil, err
	}
	if host == "" || host == "*" {
		return []Endpoint{{"tcp4", net.JoinHostPort("0.0.0.0", port)}}, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return []Endpoint{ipEndpoint(ip, port)}, nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("listen %q: host not found: %w", addr, err)
	}
	eps := make([]Endpoint, 0, len(ips))
	for _, ip := range ips {
		if ip.Zone == "" {
			eps = appendNew(eps, ipEndpoint(ip.IP, port))
		}
	}
	return eps, nil
}

func appendNew[T comparable](s []T, v T) []T {
	for _, have := range s {
		if have == v {
			return s
		}
	}
	return append(s, v)
}

func ipEndpoint(ip net.IP, port string) Endpoint {
	if ip.To4() != nil {
		return Endpoint{"tcp4", net.JoinHostPort(ip.To4().String(), port)}
	}
	return Endpoint{"tcp6", net.JoinHostPort(ip.String(), port)}
}

// splitListenAddress splits "host:port", "[v6]:port", "*:port" or a bare
// port, checking the port.
func splitListenAddress(addr string) (host, port string, err error) {
	if !strings.Contains(addr, ":") {
		port = addr
	} else if host, port, err = net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("listen %q: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", fmt.Errorf("listen %q: invalid port %q", addr, port)
	}
	return host, port, nil
}

// listener is the Listener a Proxy hands to a Server: the connections
// accepted on a shared socket for one listen directive. Closing it stops
// the Server's accept loop without closing the socket, which is how a
// reload hands a socket from the old Server to the new one.
type listener struct {
	conns  chan net.Conn
	done   chan struct{}
	addr   net.Addr
	config ListenConfig
	once   sync.Once
	// connLimit is the Proxy's MaxConnections and ClientLimits, shared by
	// its listeners (session.ClientLimiter).
	*connLimit
}

func newListener(addr net.Addr, lc ListenConfig, limit *connLimit) *listener {
	return &listener{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr, config: lc, connLimit: limit}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; the socket stays open for the Proxy.
func (l *listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *listener) Addr() net.Addr             { return l.addr }
func (l *listener) ListenConfig() ListenConfig { return l.config }

// ImplicitTLS reports whether the connections start with a TLS handshake
// (listen … ssl).
func (l *listener) ImplicitTLS() bool { return l.config.SSL }

// ProxyProtocol reports whether the connections start with a PROXY
// protocol header (listen … proxy_protocol).
func (l *listener) ProxyProtocol() bool { return l.config.ProxyProtocol }

var (
	_ Listener              = (*listener)(nil)
	_ session.ClientLimiter = (*listener)(nil)
)
