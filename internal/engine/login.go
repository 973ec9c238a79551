package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/internal/clock"
	"github.com/mailproxy/mailproxy/internal/proxyproto"
	"github.com/mailproxy/mailproxy/internal/relay"
	"github.com/mailproxy/mailproxy/session"
)

// Login is an accepted login: the backend to proxy to and the credentials
// to log in there with.
type Login struct {
	Backend  string
	User     string
	Password string
}

// Refusal is the error returned by [Conn.Authenticate] when the
// Authenticator refused the login.
type Refusal struct {
	Message  string // for the client
	SMTPCode string // the auth service's SMTP reply code, if any
	// Close says the session must end after the reply: the refusal came
	// without a wait, and nginx closes the connection then.
	Close bool
}

func (r *Refusal) Error() string { return "login refused: " + r.Message }

// Refuse answers a refused login with reply: the session ends there when
// the refusal says so, else the error is counted. It reports whether the
// session goes on.
func (c *Conn) Refuse(r *Refusal, reply string) bool {
	if r.Close {
		c.CloseWith(reply)
		return false
	}
	return c.Fail(reply)
}

// Authenticate asks the server's Authenticator about req. It fills in what
// the session knows: the client and local addresses, the server name and
// the attempt number; the caller sets the protocol, method and
// credentials.
//
// It returns the Login on success; a *Refusal when the login is refused
// (after waiting out the Authenticator's delay, if it gave one); or an
// error wrapping auth.ErrUnavailable when no decision could be made. It
// logs each outcome, never the password.
func (c *Conn) Authenticate(ctx context.Context, req *auth.Request) (*Login, error) {
	c.attempts++
	c.rearm = true // should this login not lead to the relay
	req.Attempt = c.attempts
	req.ClientAddr, req.LocalAddr = c.RemoteAddr(), c.LocalAddr()
	req.ServerName = c.cfg.ServerName
	req.TLS = c.TLS()
	req.ClientHost = c.ClientHost()
	if pc, ok := rawConn(c.Conn).(*proxyproto.Conn); ok {
		if src, dst, ok := pc.Announced(); ok {
			req.Proxy = &auth.ProxyInfo{Source: src, Destination: dst}
		}
	}
	res, err := c.ask(ctx, req)
	switch {
	case err != nil:
		c.logLogin(errorlog.LevelError, "authentication unavailable", req, redactedErr(err, req.User, req.Password))
		return nil, err
	case !res.OK():
		c.logLogin(errorlog.LevelInfo, "client login failed", req, slog.String("reason", auth.Redact(res.Error, req.User, req.Password)), slog.Duration("wait", res.Wait))
		if res.Wait > 0 {
			if err := clock.Sleep(ctx, res.Wait); err != nil {
				return nil, err
			}
		}
		return nil, &Refusal{Message: res.Error, SMTPCode: res.SMTPCode, Close: res.Wait == 0}
	}
	user, pass, err := res.BackendLogin(req)
	if err != nil {
		c.logLogin(errorlog.LevelError, "authenticator gave no backend password", req, redactedErr(err, req.User, req.Password))
		return nil, fmt.Errorf("%w: %v", auth.ErrUnavailable, err)
	}
	c.logLogin(errorlog.LevelInfo, "client logged in", req, slog.String("backend", res.Backend))
	return &Login{Backend: res.Backend, User: user, Password: pass}, nil
}

// logLogin logs the outcome of a login: the session's attributes, the
// protocol, the user, the method and the attempt, then extra; never the
// password. Nothing is built below the log's level.
func (c *Conn) logLogin(level slog.Level, msg string, req *auth.Request, extra ...slog.Attr) {
	if !c.Log.Enabled(bg, level) {
		return
	}
	attrs := append([]slog.Attr{
		slog.String("proto", req.Protocol), slog.String("user", req.User),
		slog.String("method", string(req.Method)), slog.Int("attempt", req.Attempt),
	}, extra...)
	c.Log.LogAttrs(bg, level, msg, attrs...)
}

// redactedErr is err for a log, with the password of a login in any of
// its forms hidden: services and backends may echo what they were sent.
func redactedErr(err error, user, password string) slog.Attr {
	return slog.String("err", auth.Redact(err.Error(), user, password))
}

// ask calls the Authenticator within the server's timeout.
func (c *Conn) ask(ctx context.Context, req *auth.Request) (*auth.Result, error) {
	if c.cfg.Auth == nil {
		return nil, fmt.Errorf("%w: no Authenticator configured", auth.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	start := c.end.meter.start()
	res, err := c.cfg.Auth.Authenticate(ctx, req)
	c.end.meter.auth(start, res, err)
	switch {
	case err != nil && !errors.Is(err, auth.ErrUnavailable):
		return nil, fmt.Errorf("%w: %w", auth.ErrUnavailable, err)
	case err == nil && res == nil:
		return nil, fmt.Errorf("%w: Authenticator returned no result", auth.ErrUnavailable)
	case err == nil && res.OK() && res.Backend == "":
		return nil, fmt.Errorf("%w: Authenticator accepted without a backend", auth.ErrUnavailable)
	}
	return res, err
}

// backendBuffer is the reader a backend's login dialogue is read through.
const backendBuffer = 4 << 10

// ProxyVia connects to the backend at addr and runs login there, reading
// through r. login returns the answer to the client's login: its lines in
// order, the last one the reply proper (in IMAP the untagged data the
// backend sent before its tagged status comes first). When login succeeds,
// the lines go to the client and the session is relayed until it ends,
// starting with what the backend sent past them; ProxyVia then returns
// nil. When it fails, the backend connection is closed and the answer's
// last line ("" without one) and the error are returned for the protocol
// to answer.
func (c *Conn) ProxyVia(ctx context.Context, addr string, login func(conn net.Conn, r *bufio.Reader) (answer []string, err error)) (string, error) {
	conn, err := c.dialBackend(ctx, addr)
	if err != nil {
		return "", err
	}
	r := newReader(conn, backendBuffer)
	answer, err := login(conn, r)
	pending, _ := r.Peek(r.Buffered())
	pending = bytes.Clone(pending)
	freeReader(r)
	if err != nil {
		c.end.meter.backendFailed(session.BackendLogin)
		conn.Close()
		if len(answer) == 0 {
			return "", err
		}
		return answer[len(answer)-1], err
	}
	for _, line := range answer {
		c.Reply("%s", line)
	}
	c.relay(ctx, conn, pending)
	return "", nil
}

// dialBackend connects to a backend within the server's timeout, and
// sends it a PROXY protocol header when configured to.
func (c *Conn) dialBackend(ctx context.Context, addr string) (net.Conn, error) {
	// No TCP keep-alive, as nginx sets none on backend connections:
	// proxy_timeout ends a session gone silent, and four setsockopt calls
	// a login are saved.
	d := net.Dialer{Timeout: c.cfg.Timeout, KeepAlive: -1}
	start := c.end.meter.start()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		c.end.meter.dialFailed(err)
		return nil, fmt.Errorf("backend %s: %w", addr, err)
	}
	c.end.meter.connected(start)
	conn.SetDeadline(time.Now().Add(c.cfg.Timeout))
	if v := c.cfg.SendProxyProtocol; v != 0 {
		if err := proxyproto.WriteHeader(conn, v, c.RemoteAddr(), c.LocalAddr()); err != nil {
			c.end.meter.backendFailed(session.BackendProxyProtocol)
			conn.Close()
			return nil, fmt.Errorf("backend %s: PROXY header: %w", addr, err)
		}
	}
	return conn, nil
}

// relay hands the session to the relay once the backend login is done:
// the handler's goroutine then returns, and the session ends when the
// relay does. backendPending holds what was read from the backend past
// its login reply.
func (c *Conn) relay(ctx context.Context, backend net.Conn, backendPending []byte) {
	if err := c.Flush(); err != nil {
		backend.Close()
		return
	}
	client, pending := c.Conn, bytes.Clone(c.Buffered())
	c.Release() // the relay needs no buffer of the dialogue
	if pc, ok := client.(*proxyproto.Conn); ok {
		// Relay the raw socket (splice), after what was read past the
		// header.
		raw, rest := pc.Unwrap()
		client, pending = raw, append(pending, rest...)
	}
	end := c.end.Detach()
	s := relay.Session{
		Client: client, Backend: backend,
		ClientPending: pending, BackendPending: backendPending,
		Idle: c.cfg.ProxyTimeout, Buffer: c.cfg.ProxyBuffer,
	}
	relay.Start(ctx, s, func(stats relay.Stats, err error) {
		c.Log.Info("session ended", "to_backend", stats.ToBackend, "to_client", stats.ToClient,
			"duration", time.Since(c.started).Round(time.Millisecond), "reason", endReason(err))
		c.end.meter.relayed(stats, err)
		end()
	})
}

func endReason(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}
