package mailproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
)

// socketPlan is one socket a Config needs, with the listen directives it
// serves: its own, and those of specific addresses on the same port that a
// wildcard socket accepts for them (as nginx binds only *:port then).
type socketPlan struct {
	name     string // server and address, for messages
	endpoint Endpoint
	config   ListenConfig
	routes   []routePlan
}

// routePlan sends the connections for one local address to one server.
type routePlan struct {
	local  string // the local IP served through a wildcard; "" for the socket's own
	addr   Endpoint
	server int // index in Config.Servers
	order  int // position among the server's endpoints
	config ListenConfig
}

type planEntry struct {
	server, order int
	name          string
	config        ListenConfig
	endpoint      Endpoint
}

// makePlan resolves every listen directive of cfg and groups the endpoints
// into sockets, keyed so that a reload finds the sockets it can keep.
func makePlan(ctx context.Context, cfg *Config) (map[string]*socketPlan, error) {
	entries, err := planEntries(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkDuplicates(entries); err != nil {
		return nil, err
	}
	plan := make(map[string]*socketPlan)
	wildcards := make(map[string]string) // network and port → socket key
	for _, e := range entries {
		if ownSocket(e) && e.endpoint.wildcard() {
			wildcards[familyPort(e.endpoint)] = addSocket(plan, e)
		}
	}
	for _, e := range entries {
		key, shared := wildcards[familyPort(e.endpoint)]
		switch {
		case e.endpoint.wildcard() && ownSocket(e):
			continue
		case ownSocket(e) || !shared:
			addSocket(plan, e)
		default:
			host, _, _ := net.SplitHostPort(e.endpoint.Address)
			plan[key].routes = append(plan[key].routes, route(e, host))
		}
	}
	return plan, nil
}

func planEntries(ctx context.Context, cfg *Config) ([]planEntry, error) {
	var entries []planEntry
	for i, sc := range cfg.Servers {
		if sc.Server == nil {
			return nil, fmt.Errorf("%s: no protocol handler", sc.Name)
		}
		if len(sc.Listen) == 0 {
			return nil, fmt.Errorf("%s: no listen directive", sc.Name)
		}
		for _, lc := range sc.Listen {
			eps, err := lc.Endpoints(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sc.Name, err)
			}
			for _, ep := range eps {
				entries = append(entries, planEntry{i, len(entries), sc.Name, lc, ep})
			}
		}
	}
	return entries, nil
}

func checkDuplicates(entries []planEntry) error {
	seen := make(map[Endpoint]string)
	for _, e := range entries {
		if e.endpoint.Port() == 0 {
			continue // each port 0 is a port of its own
		}
		if where, dup := seen[e.endpoint]; dup {
			return fmt.Errorf("duplicate listen %s in %s and %s", e.endpoint, where, e.name)
		}
		seen[e.endpoint] = e.name
	}
	return nil
}

// ownSocket reports whether e needs a socket of its own: a unix socket, an
// ephemeral port, a wildcard, or socket options (as nginx decides).
func ownSocket(e planEntry) bool {
	p := e.endpoint.Port()
	return p <= 0 || e.endpoint.wildcard() || e.config.socketOptions()
}

func familyPort(ep Endpoint) string {
	return ep.Network + " " + strconv.Itoa(ep.Port())
}

func addSocket(plan map[string]*socketPlan, e planEntry) string {
	key := e.endpoint.Network + " " + e.endpoint.Address
	if e.endpoint.Port() == 0 {
		key += fmt.Sprintf(" #%d.%d", e.server, e.order)
	}
	plan[key] = &socketPlan{
		name:     e.name + ": listen " + e.endpoint.String(),
		endpoint: e.endpoint,
		config:   e.config,
		routes:   []routePlan{route(e, "")},
	}
	return key
}

func route(e planEntry, local string) routePlan {
	return routePlan{local: local, addr: e.endpoint, server: e.server, order: e.order, config: e.config}
}

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

// setRoutes makes new listeners for the routes of sp, appends each to
// byServer for its server, and retires the listeners they replace.
func (s *socket) setRoutes(sp *socketPlan, cfg *Config, byServer [][]*listener) {
	routes := make(map[string]*listener, len(sp.routes))
	served := make([]servedRoute, 0, len(sp.routes))
	for _, r := range sp.routes {
		addr := s.ln.Addr()
		if r.local != "" {
			addr = tcpAddr(r.addr)
		}
		l := newListener(addr, r.config)
		if r.config.ProxyProtocol {
			sc := cfg.Servers[r.server]
			l.wrap = func(c net.Conn) net.Conn { return newProxyConn(c, sc.RealIP, sc.HeaderTimeout) }
		}
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
// a reload that replaces the route while it waits.
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
		case <-s.closed:
			c.Close()
			return
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

// close closes the socket and the listeners fed by it.
func (s *socket) close() {
	s.once.Do(func() {
		close(s.closed)
		s.ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range s.routes {
			l.Close()
		}
	})
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

// applyOptions sets the socket options and backlog of lc on an open socket.
func applyOptions(ln net.Listener, ep Endpoint, lc ListenConfig) error {
	rc, err := rawConn(ln)
	if err != nil {
		return err
	}
	err = control(rc, func(fd uintptr) error { return setSocketOptions(fd, ep, lc) })
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
