package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/session"
)

// This file holds the limits on one client address (session.ClientLimiter)
// as a session meets them: its connection is admitted once the client's
// address is known, after a PROXY protocol header (Conn.Open), and its
// logins are counted and refused through the Authenticator (limitedAuth).

// clientKey is the context key of a session's *clientPlace.
type clientKey struct{}

// clientPlace is a session's standing with its listener's ClientLimiter.
type clientPlace struct {
	lim      session.ClientLimiter
	addr     netip.Addr
	admitted bool
}

// withClientLimiter gives the session run with ctx a place with lim, when
// lim also limits client addresses. The returned func releases the place
// once the session is over.
func withClientLimiter(ctx context.Context, lim session.Limiter) (context.Context, func()) {
	cl, ok := lim.(session.ClientLimiter)
	if !ok {
		return ctx, func() {}
	}
	p := &clientPlace{lim: cl}
	return context.WithValue(ctx, clientKey{}, p), p.release
}

func (p *clientPlace) release() {
	if p.admitted {
		p.lim.ReleaseClient(p.addr)
	}
}

// placeOf returns the session's admitted place, or nil when its client is
// not limited.
func placeOf(ctx context.Context) *clientPlace {
	p, _ := ctx.Value(clientKey{}).(*clientPlace)
	if p == nil || !p.admitted {
		return nil
	}
	return p
}

// admitClient asks the listener's ClientLimiter, if any, to admit the
// client, and reports whether the session goes on. A client refused hears
// why in the protocol's words, unless the connection starts with a TLS
// handshake, where a reply in clear text would mean nothing to it.
func (c *Conn) admitClient(ctx context.Context) bool {
	p, _ := ctx.Value(clientKey{}).(*clientPlace)
	addr, ok := c.RemoteAddr().(*net.TCPAddr)
	if p == nil || !ok {
		return true
	}
	ip, _ := netip.AddrFromSlice(addr.IP)
	ip = ip.Unmap()
	err := p.lim.AdmitClient(ip)
	if err == nil {
		p.addr, p.admitted = ip, true
		return true
	}
	c.Log.Debug("client refused", "err", err)
	if _, implicitTLS := c.Conn.(*tls.Conn); implicitTLS {
		return false
	}
	reply := c.replies.TooManyConnections
	if errors.Is(err, session.ErrTooManyFailures) {
		reply = c.replies.TooManyFailures
	}
	c.Reply("%s", reply)
	c.Flush()
	return false
}

// limitedAuth is the Authenticator a server's sessions ask: it counts the
// logins the server's Authenticator refuses against the client's address,
// and refuses itself, with the words of refusal, the logins of a client
// that failed too often.
type limitedAuth struct {
	next    auth.Authenticator
	refusal auth.Result
}

func (a *limitedAuth) Authenticate(ctx context.Context, req *auth.Request) (*auth.Result, error) {
	p := placeOf(ctx)
	if p == nil || req.Method == auth.MethodNone {
		return a.next.Authenticate(ctx, req)
	}
	if err := p.lim.AdmitLogin(p.addr); err != nil {
		r := a.refusal
		return &r, nil
	}
	res, err := a.next.Authenticate(ctx, req)
	if err == nil && res != nil && !res.OK() {
		p.lim.LoginFailed(p.addr)
	}
	return res, err
}

var _ auth.Authenticator = (*limitedAuth)(nil)
