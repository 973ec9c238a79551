package mailproxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
)

// socket is an open listening socket and where its connections go.
type socket struct {
	name     string
	ln       net.Listener
	endpoint Endpoint
	config   ListenConfig

	mu     sync.Mutex
	routes map[string]*listener // by local IP; "" for the socket's own address
	served []servedRoute
	closed chan struct{}
	once   sync.Once
}

type servedRoute struct {
	server, order int
	addr          net.Addr
}

func newSocket(sp *socketPlan, ln net.Listener) *socket {
	return &socket{name: sp.name, ln: ln, endpoint: sp.endpoint, config: sp.config, closed: make(chan struct{})}
}

// setRoutes makes new listeners for the routes of sp, sharing limit,
// appends each to byServer for its server, and retires the listeners they
// replace.
func (s *socket) setRoutes(sp *socketPlan, limit *connLimit, byServer [][]*listener) {
	routes := make(map[string]*listener, len(sp.routes))
	served := make([]servedRoute, 0, len(sp.routes))
	for _, r := range sp.routes {
		addr := s.ln.Addr()
		if r.local != "" {
			addr = tcpAddr(r.addr)
		}
		l := newListener(addr, r.config, limit)
		routes[r.local] = l
		served = append(served, servedRoute{r.server, r.order, addr})
		byServer[r.server] = append(byServer[r.server], l)
	}
	s.mu.Lock()
	old := s.routes
	s.routes, s.served = routes, served
	s.mu.Unlock()
	for _, l := range old {
		l.Close()
	}
}

func tcpAddr(ep Endpoint) net.Addr {
	addr, _ := net.ResolveTCPAddr(ep.Network, ep.Address)
	return addr
}

// route returns the listener for a connection to local.
func (s *socket) route(local net.Addr) *listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := local.(*net.TCPAddr); ok {
		if l, ok := s.routes[a.IP.String()]; ok {
			return l
		}
	}
	return s.routes[""]
}

// dispatch hands c to the Server its local address is routed to, following
// a reload that replaces the route while it waits. A connection accepted
// before the socket closed is still handed over: it was accepted, and in
// an upgrade no other process will take it.
func (s *socket) dispatch(c net.Conn) {
	for {
		l := s.route(c.LocalAddr())
		if l == nil {
			c.Close()
			return
		}
		select {
		case l.conns <- c:
			return
		case <-l.done:
			if s.route(c.LocalAddr()) == l {
				c.Close() // its server is gone and nothing replaced it
				return
			}
		}
	}
}

func (s *socket) addrsOf(server int) []servedRoute {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []servedRoute
	for _, r := range s.served {
		if r.server == server {
			out = append(out, r)
		}
	}
	return out
}

func (s *socket) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// close closes the socket. Its accept loop then ends, and closes the
// listeners fed by it (closeRoutes) once the last connection it accepted
// is handed over.
func (s *socket) close() {
	s.once.Do(func() {
		close(s.closed)
		s.ln.Close()
	})
}

// closeRoutes closes the listeners fed by the socket: their Servers stop
// accepting.
func (s *socket) closeRoutes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.routes {
		l.Close()
	}
}

// warnChanged re-applies the socket options of lc to a socket kept across a
// reload, and warns about those that only a new socket can change.
func (s *socket) warnChanged(log *slog.Logger, lc ListenConfig) {
	if s.config == lc {
		return
	}
	kept := s.config
	if kept.IPv6Only != lc.IPv6Only || kept.ReusePort != lc.ReusePort || kept.Multipath != lc.Multipath {
		log.Warn("listen parameters ipv6only, reuseport and multipath take effect after a restart", "listen", s.name)
	}
	err := applyOptions(s.ln, s.endpoint, lc)
	if err != nil {
		log.Warn("cannot change listen parameters of an open socket", "listen", s.name, "err", err)
		return
	}
	s.config = lc
}

// applyOptions sets the socket options and backlog of lc on an open socket:
// one kept across a reload, or an inherited one.
func applyOptions(ln net.Listener, ep Endpoint, lc ListenConfig) error {
	rc, err := rawConn(ln)
	if err != nil {
		return err
	}
	err = control(rc, func(fd uintptr) error { return setSocketOptions(fd, ep, lc, true) })
	if err != nil || lc.Backlog == 0 {
		return err
	}
	return setBacklog(ln, lc.Backlog)
}

var errNoDescriptor = errors.New("listener has no descriptor")

func sortedAddrs(routes []servedRoute) []net.Addr {
	slices.SortFunc(routes, func(a, b servedRoute) int { return a.order - b.order })
	addrs := make([]net.Addr, len(routes))
	for i, r := range routes {
		addrs[i] = r.addr
	}
	return addrs
}

// openSocket opens the listening socket for ep with the socket options of
// lc. Keepalive is set on the listening socket and inherited by the
// accepted ones, as in nginx, so Go's own default keepalive is turned off.
func openSocket(ctx context.Context, ep Endpoint, lc ListenConfig) (net.Listener, error) {
	nlc := net.ListenConfig{KeepAlive: -1}
	nlc.SetMultipathTCP(lc.Multipath)
	nlc.Control = func(_, _ string, rc syscall.RawConn) error {
		return control(rc, func(fd uintptr) error { return setSocketOptions(fd, ep, lc, false) })
	}
	if ep.Network == "unix" {
		if err := removeStaleSocket(ep.Address); err != nil {
			return nil, err
		}
	}
	ln, err := nlc.Listen(ctx, ep.Network, ep.Address)
	if err != nil {
		return nil, err
	}
	if lc.Backlog > 0 {
		if err := setBacklog(ln, lc.Backlog); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// control runs set on the socket's descriptor and returns its error.
func control(rc syscall.RawConn, set func(fd uintptr) error) error {
	var setErr error
	if err := rc.Control(func(fd uintptr) { setErr = set(fd) }); err != nil {
		return err
	}
	return setErr
}

// setBacklog changes the listen queue length of an open socket: Go always
// listens with the system maximum, and listen(2) may be called again.
func setBacklog(ln net.Listener, backlog int) error {
	rc, err := rawConn(ln)
	if err != nil {
		return err
	}
	return control(rc, func(fd uintptr) error { return relisten(fd, backlog) })
}

func rawConn(ln net.Listener) (syscall.RawConn, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T: %w", ln, errNoDescriptor)
	}
	return sc.SyscallConn()
}

// removeStaleSocket removes a unix socket file left by a process that did
// not close it; a file of another kind is left alone (bind then fails).
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || fi.Mode()&fs.ModeSocket == 0 {
		return err
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("listen unix:%s: address already in use", path)
	}
	return os.Remove(path)
}
