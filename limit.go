package mailproxy

import (
	"log/slog"
	"sync/atomic"

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
type connLimit struct {
	max    int64 // no limit when negative
	active atomic.Int64
	log    *slog.Logger
	warn   accept.Throttle
}

func newConnLimit(maxConns int, log *slog.Logger) *connLimit {
	if maxConns == 0 {
		maxConns = defaultMaxConnections()
	}
	return &connLimit{max: int64(maxConns), log: log}
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

var _ session.Limiter = (*connLimit)(nil)
