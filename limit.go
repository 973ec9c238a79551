package mailproxy

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailproxy/mailproxy/internal/accept"
	"github.com/mailproxy/mailproxy/session"
)

// Descriptors a session holds, counted by the default connection limit:
// the client's socket and the backend's. The relay's splice pipes come
// from a pool while bytes move, and when none can be had the relay copies
// through a buffer instead.
const descriptorsPerSession = 2

// descriptorReserve is what the default connection limit leaves to the
// rest of the process, at least: listening sockets, the pool's pipes, the
// auth service's and the resolver's connections, log files, and the
// clients being refused. A thirty-second of the limit is kept when that is
// more.
const descriptorReserve = 32

// defaultMaxConnections is the limit of a Proxy whose MaxConnections is
// zero: what the descriptor limit (RLIMIT_NOFILE) leaves for sessions
// after the reserve, at least one; none where that limit is unknown.
func defaultMaxConnections() int {
	n := descriptorLimit()
	if n <= 0 {
		return -1
	}
	return max((n-max(descriptorReserve, n/32))/descriptorsPerSession, 1)
}

// connLimit counts the sessions of every Server of a Proxy, old
// generations' included, against the Proxy's limit. The listeners of the
// Proxy share it: it is their session.Limiter.
//
// It also holds what each client address does, against the running
// Config's ClientLimits: the listeners' session.ClientLimiter.
type connLimit struct {
	max    int64 // no limit when negative
	active atomic.Int64
	log    *slog.Logger
	warn   accept.Throttle

	clients clientTable
}

func newConnLimit(maxConns int, log *slog.Logger) *connLimit {
	if maxConns == 0 {
		maxConns = defaultMaxConnections()
	}
	l := &connLimit{max: int64(maxConns), log: log}
	l.clients.now = time.Now
	return l
}

// Admit takes a place for a session, unless all are taken: the refusal
// is logged, at most once a second.
func (l *connLimit) Admit() bool {
	if l.max < 0 {
		return true
	}
	if l.active.Add(1) <= l.max {
		return true
	}
	l.active.Add(-1)
	if unlogged, ok := l.warn.Allow(); ok {
		l.log.Warn("connection limit reached; client refused", "max_connections", l.max, "unlogged", unlogged)
	}
	return false
}

// Release gives an admitted session's place back.
func (l *connLimit) Release() {
	if l.max >= 0 {
		l.active.Add(-1)
	}
}

var _ session.ClientLimiter = (*connLimit)(nil)

// ClientLimits bound what one client may do, in every Server of a Proxy
// together: ours, beyond nginx (which needs its stream module for the
// like). A client is an IPv4 address, or an IPv6 /64 network (what one
// site is given); behind a load balancer, the address its PROXY protocol
// header gives when RealIP trusts it. A client refused hears it in its
// protocol's words: IMAP "* BYE" instead of the greeting and "NO
// [UNAVAILABLE]" to a login, POP3 "-ERR [SYS/TEMP]", SMTP "421 4.7.0";
// on a listener of implicit TLS the connection is closed before the
// handshake. The zero value limits nothing.
type ClientLimits struct {
	// Connections bounds the sessions of one client served at once
	// (max_connections_per_client). Zero means no limit.
	Connections int
	// LoginFailures refuses a client once the Authenticator has refused
	// this many of its logins within LoginWindow
	// (max_login_failures_per_client): its new connections, and the
	// logins it tries in those still open, until the oldest of those
	// failures has left the window. Logins the Authenticator could not
	// decide, and SMTP's routing by recipient without a login, are not
	// counted. Zero means no limit.
	LoginFailures int
	// LoginWindow is how far back LoginFailures counts. Zero means
	// DefaultLoginWindow.
	LoginWindow time.Duration
}

// DefaultLoginWindow is the window of ClientLimits.LoginFailures when its
// LoginWindow is zero.
const DefaultLoginWindow = 10 * time.Minute

func (cl ClientLimits) window() time.Duration {
	if cl.LoginWindow <= 0 {
		return DefaultLoginWindow
	}
	return cl.LoginWindow
}

// clientTable holds what each client does: its sessions open, and its
// failed logins within the window.
type clientTable struct {
	limits atomic.Pointer[ClientLimits]
	now    func() time.Time

	mu    sync.Mutex
	conns map[netip.Prefix]int
	// failures holds the times of a client's failed logins within the
	// window, oldest first, at most LoginFailures of them.
	failures map[netip.Prefix][]time.Time
	// sweepAt is the size of failures at which the clients whose failures
	// have all left the window are forgotten.
	sweepAt int

	warnConns, warnFailures, warnBlocked accept.Throttle
}

// minSweep is the least size of the failures table at which it is swept.
const minSweep = 1024

// clientOf returns the client an address belongs to.
func clientOf(addr netip.Addr) netip.Prefix {
	bits := 32
	if !addr.Is4() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// setClientLimits puts cl in force; the counts go on.
func (l *connLimit) setClientLimits(cl ClientLimits) {
	l.clients.limits.Store(&cl)
}

// AdmitClient takes a place for a session of the client at addr, unless
// the client failed too many logins or holds all its places. Every
// session is counted, so that limits a reload brings in count the
// sessions already open.
func (l *connLimit) AdmitClient(addr netip.Addr) error {
	t := &l.clients
	lim := t.limits.Load()
	c := clientOf(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if lim != nil && t.blocked(c, lim) {
		if unlogged, ok := t.warnBlocked.Allow(); ok {
			l.log.Warn("client refused: too many failed logins", "client", addr.String(), "unlogged", unlogged)
		}
		return session.ErrTooManyFailures
	}
	if lim != nil && lim.Connections > 0 && t.conns[c] >= lim.Connections {
		if unlogged, ok := t.warnConns.Allow(); ok {
			l.log.Warn("client refused: too many connections from its address", "client", addr.String(),
				"max_connections_per_client", lim.Connections, "unlogged", unlogged)
		}
		return session.ErrTooManyConnections
	}
	if t.conns == nil {
		t.conns = make(map[netip.Prefix]int)
	}
	t.conns[c]++
	return nil
}

// ReleaseClient gives back the place of an admitted session.
func (l *connLimit) ReleaseClient(addr netip.Addr) {
	t := &l.clients
	c := clientOf(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns[c]--; t.conns[c] <= 0 {
		delete(t.conns, c)
	}
}

// AdmitLogin refuses the logins of a client that failed too many.
func (l *connLimit) AdmitLogin(addr netip.Addr) error {
	t := &l.clients
	lim := t.limits.Load()
	if lim == nil || lim.LoginFailures <= 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.blocked(clientOf(addr), lim) {
		return session.ErrTooManyFailures
	}
	return nil
}

// LoginFailed counts a failed login of the client at addr.
func (l *connLimit) LoginFailed(addr netip.Addr) {
	t := &l.clients
	lim := t.limits.Load()
	if lim == nil || lim.LoginFailures <= 0 {
		return
	}
	c := clientOf(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failures == nil {
		t.failures = make(map[netip.Prefix][]time.Time)
	}
	f := append(t.recent(c, lim), t.now())
	if len(f) > lim.LoginFailures {
		f = f[len(f)-lim.LoginFailures:]
	}
	t.failures[c] = f
	if len(f) == lim.LoginFailures {
		if unlogged, ok := t.warnFailures.Allow(); ok {
			l.log.Warn("client blocked: too many failed logins", "client", addr.String(),
				"max_login_failures_per_client", lim.LoginFailures, "window", lim.window(), "unlogged", unlogged)
		}
	}
	if len(t.failures) >= max(t.sweepAt, minSweep) {
		t.sweep(lim)
	}
}

// recent returns the failures of c still within the window, forgetting
// the others. The caller holds t.mu.
func (t *clientTable) recent(c netip.Prefix, lim *ClientLimits) []time.Time {
	f := t.failures[c]
	since := t.now().Add(-lim.window())
	i := 0
	for i < len(f) && !f[i].After(since) {
		i++
	}
	if i == len(f) {
		delete(t.failures, c)
		return nil
	}
	return f[i:]
}

// blocked reports whether c failed too many logins within the window. The
// caller holds t.mu.
func (t *clientTable) blocked(c netip.Prefix, lim *ClientLimits) bool {
	if lim.LoginFailures <= 0 || t.failures[c] == nil {
		return false
	}
	return len(t.recent(c, lim)) >= lim.LoginFailures
}

// sweep forgets the clients whose failures have all left the window. The
// caller holds t.mu.
func (t *clientTable) sweep(lim *ClientLimits) {
	for c := range t.failures {
		t.recent(c, lim)
	}
	t.sweepAt = 2 * len(t.failures)
}
