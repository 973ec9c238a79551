package engine

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/relay"
	"github.com/mailproxy/mailproxy/session"
)

// meter is what a session reports to its listener's session.Metrics. It
// lives in the session's Ending, which reports the session's end. Without
// Metrics, m is nil and each report is a nil check.
type meter struct {
	m     session.ListenerMetrics
	limit session.Limit // the limit that ended the session, if one did
}

// counted wraps handle so that the sessions accepted on ln are counted,
// when the server has Metrics.
func (s *Server) counted(ln net.Listener, handle Handler) Handler {
	if s.settings.Metrics == nil {
		return handle
	}
	m := s.settings.Metrics.Listener(s.settings.protocol, ln.Addr().String())
	return func(ctx context.Context, conn net.Conn, end *Ending) {
		m.Opened()
		end.meter.m = m
		end.Defer(func() { m.Closed(end.meter.limit) })
		handle(ctx, conn, end)
	}
}

// ended records that lim ended the session.
func (m *meter) ended(lim session.Limit) { m.limit = lim }

// timedOut records that the timeout ended the session when err, from a
// read of the client or a write to it, is a timeout.
func (m *meter) timedOut(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		m.limit = session.LimitTimeout
	}
}

// start returns the time an operation to be measured starts: the zero
// time without Metrics, which need not read the clock.
func (m *meter) start() time.Time {
	if m.m == nil {
		return time.Time{}
	}
	return time.Now()
}

// handshake counts a TLS handshake with the client.
func (m *meter) handshake(err error) {
	if m.m != nil {
		m.m.TLSHandshake(err == nil)
	}
}

// auth counts a call of the Authenticator started at start, which
// answered res and err.
func (m *meter) auth(start time.Time, res *auth.Result, err error) {
	if m.m != nil {
		m.m.Auth(time.Since(start), authOutcome(res, err))
	}
}

func authOutcome(res *auth.Result, err error) session.AuthOutcome {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return session.AuthTimeout
	case errors.As(err, &oe) && oe.Op == "dial":
		return session.AuthConnect
	case errors.Is(err, auth.ErrNoStatus) || errors.Is(err, auth.ErrNoBackend):
		return session.AuthInvalid
	case err != nil:
		return session.AuthError
	case res == nil || res.OK() && res.Backend == "":
		return session.AuthInvalid
	case res.OK():
		return session.AuthAccepted
	}
	return session.AuthRefused
}

// connected observes a connection to a backend started at start.
func (m *meter) connected(start time.Time) {
	if m.m != nil {
		m.m.BackendConnected(time.Since(start))
	}
}

// backendFailed counts a backend that could not be used.
func (m *meter) backendFailed(why session.BackendFailure) {
	if m.m != nil {
		m.m.BackendFailed(why)
	}
}

// dialFailed counts a backend connection that failed with err.
func (m *meter) dialFailed(err error) {
	var ne net.Error
	switch {
	case m.m == nil:
	case errors.Is(err, syscall.ECONNREFUSED):
		m.m.BackendFailed(session.BackendRefused)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		m.m.BackendFailed(session.BackendTimeout)
	default:
		m.m.BackendFailed(session.BackendConnect)
	}
}

// relayed counts what a relayed session moved, and records that
// proxy_timeout ended it when it did.
func (m *meter) relayed(stats relay.Stats, err error) {
	if errors.Is(err, relay.ErrIdle) {
		m.limit = session.LimitProxyTimeout
	}
	if m.m != nil {
		m.m.Relayed(stats.ToBackend, stats.ToClient)
	}
}
