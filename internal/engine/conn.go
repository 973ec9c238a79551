package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/internal/proxyproto"
	"github.com/mailproxy/mailproxy/session"
)

// Errors returned by [Conn] when a client breaks a limit.
var (
	ErrLineTooLong     = errors.New("mail: line too long")
	ErrTooManyCommands = errors.New("mail: too many commands")
)

// Replies are a protocol's words for what the engine answers itself.
type Replies struct {
	LineTooLong     string // sent before closing at a line beyond the client buffer
	TooManyCommands string // sent before closing at max_commands
	TooManyErrors   string // sent before closing at max_errors
	// NoClientCert and BadClientCert end a TLS session whose client
	// certificate is missing or invalid (ssl_verify_client).
	NoClientCert  string
	BadClientCert string
	// TooManyConnections refuses a client beyond the limit of a
	// session.Limiter before the greeting.
	TooManyConnections string
	// TooManyFailures refuses, before the greeting, a client whose
	// address failed to log in too often (session.ClientLimiter).
	TooManyFailures string
	// FailedLogins answers, in the Authenticator's stead, a login tried
	// by such a client in a session already open: a refusal without a
	// wait, which ends the session.
	FailedLogins auth.Result
	// SASL answers a SASL exchange that failed; see [Conn.SASLFailed].
	SASL SASLReplies
}

// SASLReplies answer the errors of [Conn.ReadSASL], one reply each. In
// IMAP they follow the command's tag.
type SASLReplies struct {
	Mechanism   string // ErrMechanism: not offered
	Cancelled   string // the client sent "*"
	BadBase64   string // a response that is not base64
	LineTooLong string // ErrLineTooLong: a response beyond the client buffer
	Invalid     string // any other error of the mechanism
}

// Conn is a client connection during the dialogue before proxying starts.
// It reads bounded lines within the server's timeout, counts commands and
// errors against max_commands and max_errors, and buffers replies.
//
// The timeout bounds the whole dialogue, as nginx's timer does: it runs
// from the greeting to the login, and again from each login that did not
// lead to the relay to the next; a client that keeps sending (a byte a
// second, or a NOOP a second), or that does not read its replies, is
// closed when it runs out as one that sends nothing is.
type Conn struct {
	net.Conn
	// Log is the session's logger. Its lines carry the connection number
	// (errorlog.ConnKey), the client's IP address and the address the
	// client connected to, as nginx's do.
	Log *slog.Logger

	cfg      *Settings
	replies  Replies
	r        *bufio.Reader
	w        *bufio.Writer
	commands int
	errors   int
	attempts int // logins asked of the Authenticator
	tls      *auth.TLSInfo
	host     chan string // the resolver's answer, once asked
	hostName string
	end      *Ending   // what ends the session
	started  time.Time // when the session started
	// deadline is when the client's time runs out (see arm); rearm says
	// that a login was tried since, which gives the client its time again
	// at its next read.
	deadline time.Time
	rearm    bool
}

// replyBuffer is the size of the buffer that replies are queued in.
const replyBuffer = 1024

// connections numbers the sessions of the process, as nginx numbers its
// connections ("*17" in its log lines).
var connections atomic.Uint64

// NewConn wraps c for a session of a server with the settings st, which
// end ends, and gives it the next connection number. Its buffers come
// from pools: Release gives them back.
func NewConn(c net.Conn, st *Settings, end *Ending) *Conn {
	log := slog.New(st.Logger.Handler().WithAttrs([]slog.Attr{
		slog.Uint64(errorlog.ConnKey, connections.Add(1)),
		slog.Any("client", addrValue(c.RemoteAddr(), false)),
		slog.Any("server", addrValue(c.LocalAddr(), true)),
	}))
	now := time.Now()
	return &Conn{
		Conn:     c,
		end:      end,
		started:  now,
		deadline: now.Add(st.Timeout),
		Log:      log,
		cfg:      st,
		replies:  st.Replies,
		r:        newReader(c, st.MaxLine),
		w:        newWriter(c, replyBuffer),
	}
}

// arm gives the client the server's timeout, from now, for what it sends
// until the next login: at the greeting, and after a login that did not
// lead to the relay (nginx re-arms its timer there too).
func (c *Conn) arm() {
	c.deadline, c.rearm = time.Now().Add(c.cfg.Timeout), false
}

// addrValue is an address as a log attribute's value: a TCP address as
// its IP (and port), other addresses as their text.
func addrValue(a net.Addr, withPort bool) any {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if withPort {
			return ap
		}
		return ap.Addr()
	}
	return a.String()
}

// bg is the context of the session's log lines, and inAuthState the
// action (nginx's words) of those of the dialogue before the relay.
var (
	bg          = context.Background()
	inAuthState = slog.String(errorlog.ActionKey, "in auth state")
)

// ReadCommand reads the next command line and counts it against
// max_commands. The line is returned without its CR LF and is valid until
// the next read. A line longer than the limit is ErrLineTooLong, read no
// further: the session ends there (see [Conn.TooLong]).
func (c *Conn) ReadCommand() ([]byte, error) {
	if c.cfg.MaxCommands > 0 && c.commands >= c.cfg.MaxCommands {
		c.end.meter.ended(session.LimitMaxCommands)
		return nil, ErrTooManyCommands
	}
	c.commands++
	return c.ReadLine()
}

// ReadLine reads a line that is not a command (a SASL response, a
// literal's continuation) with the same bounds as ReadCommand.
func (c *Conn) ReadLine() ([]byte, error) {
	if err := c.awaitClient(); err != nil {
		return nil, err
	}
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, ErrLineTooLong
	}
	if err != nil {
		c.clientFailed(err)
		c.end.meter.timedOut(err)
		return nil, err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
	return line, nil
}

// ReadLiteral reads exactly n bytes (an IMAP literal) within the server's
// timeout.
func (c *Conn) ReadLiteral(n int) ([]byte, error) {
	if err := c.awaitClient(); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.r, buf); err != nil {
		c.clientFailed(err)
		c.end.meter.timedOut(err)
		return nil, err
	}
	return buf, nil
}

// awaitClient sends the queued replies and gives the client what is left
// of its time for what it sends next: the whole of a line, a literal or a
// SASL response must come before the deadline, however it trickles in.
func (c *Conn) awaitClient() error {
	if err := c.Flush(); err != nil {
		c.clientFailed(err)
		c.end.meter.timedOut(err) // a client that does not read its replies
		return err
	}
	if c.rearm {
		c.arm()
	}
	return c.SetReadDeadline(c.deadline)
}

// clientFailed logs why a read from or a write to the client failed, in
// nginx's words and at its level: info, since the client is to blame.
// A connection the server closed itself (a stop) is logged at debug.
func (c *Conn) clientFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client closed connection", inAuthState)
	case errors.As(err, &ne) && ne.Timeout():
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client timed out", inAuthState)
	case errors.Is(err, net.ErrClosed):
		c.Log.LogAttrs(bg, errorlog.LevelDebug, "connection closed by the server", inAuthState)
	default:
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client connection failed", slog.Any("err", err), inAuthState)
	}
}

// TooLong ends a session whose client sent a line beyond the client
// buffer, as nginx does ("client sent too long command"): the protocol's
// reply, then the close. Reading on to the line's end would let a client
// that never ends one keep the session forever.
func (c *Conn) TooLong() {
	c.Log.LogAttrs(bg, errorlog.LevelInfo, "client sent too long command", inAuthState)
	c.end.meter.ended(session.LimitLineTooLong)
	c.CloseWith(c.replies.LineTooLong)
}

// Open runs what comes before the greeting: the PROXY protocol header
// and, on an implicit TLS connection, the TLS handshake and client
// certificate check; it starts the lookup of the client's host name. It
// reports whether the session goes on; when not, the connection has been
// answered and closed.
//
// It logs the session's start at level info ("client connected", with the
// client's port), as nginx does, once the client is known: after the
// PROXY protocol header.
func (c *Conn) Open(ctx context.Context) bool {
	if pc, ok := rawConn(c.Conn).(*proxyproto.Conn); ok {
		if err := pc.Handshake(); err != nil {
			c.proxyHeaderFailed(err)
			c.end.meter.timedOut(err)
			return false
		}
	}
	var port slog.Attr
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		port = slog.Int("client_port", a.Port)
	}
	c.Log.LogAttrs(ctx, errorlog.LevelInfo, "client connected", port)
	if !c.admitClient(ctx) {
		return false
	}
	c.lookupHost(ctx)
	if tc, ok := c.Conn.(*tls.Conn); ok {
		c.arm() // for the handshake
		if c.startSecure(tc) != nil {
			return false
		}
	}
	c.arm() // for the dialogue, from the greeting
	return true
}

// proxyHeaderFailed logs a PROXY protocol header that could not be read:
// a client that sent none in time at level info, a broken one at level
// error, as nginx logs a broken header.
func (c *Conn) proxyHeaderFailed(err error) {
	action := slog.String(errorlog.ActionKey, "reading PROXY protocol")
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client timed out", action)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client closed connection", action)
	default:
		c.Log.LogAttrs(bg, errorlog.LevelError, "broken PROXY protocol header", slog.Any("err", err), action)
	}
}

// lookupHost starts the resolver on the client's address, when there is
// a resolver and the client has an IP address.
func (c *Conn) lookupHost(ctx context.Context) {
	addr, ok := c.RemoteAddr().(*net.TCPAddr)
	if c.cfg.Resolver == nil || !ok {
		return
	}
	ip, _ := netip.AddrFromSlice(addr.IP)
	c.host = make(chan string, 1)
	go func() { c.host <- c.cfg.Resolver.ClientHost(ctx, ip.Unmap()) }()
}

// ClientHost returns the client's host name as the resolver found it,
// waiting for the lookup if it is still running; "" without a resolver.
func (c *Conn) ClientHost() string {
	if c.host != nil {
		c.hostName, c.host = <-c.host, nil
	}
	return c.hostName
}

// Run reads command lines and calls command for each, until command
// returns false, the client goes away, ctx ends, or a limit is broken.
func (c *Conn) Run(ctx context.Context, command func(line []byte) bool) {
	for ctx.Err() == nil {
		line, err := c.ReadCommand()
		switch {
		case err == nil:
			if !command(line) {
				return
			}
		case errors.Is(err, ErrLineTooLong):
			c.TooLong()
			return
		case errors.Is(err, ErrTooManyCommands):
			c.Log.LogAttrs(bg, errorlog.LevelInfo, "client sent too many commands", inAuthState)
			c.CloseWith(c.replies.TooManyCommands)
			return
		default: // logged by the read
			return
		}
	}
}

// Failed counts a protocol error whose reply is queued, and reports whether
// the session goes on: at max_errors it sends the closing reply and returns
// false.
func (c *Conn) Failed() bool {
	c.errors++
	if c.cfg.MaxErrors > 0 && c.errors >= c.cfg.MaxErrors {
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client sent too many invalid commands", inAuthState)
		c.end.meter.ended(session.LimitMaxErrors)
		c.CloseWith(c.replies.TooManyErrors)
		return false
	}
	return true
}

// Fail queues reply to a protocol error and counts the error: it reports
// whether the session goes on, as [Conn.Failed] does.
func (c *Conn) Fail(reply string) bool {
	c.Reply("%s", reply)
	return c.Failed()
}

// CloseWith sends the queued replies and a last one, and closes the
// connection.
//
// The close lingers: it ends the sending side first and reads what the
// client still sends for a moment. Closing a socket with unread input makes
// the kernel send a reset, and a reset can destroy the last reply before
// the client reads it. A shutdown of the server ends the lingering at
// once: the session has said its last word.
func (c *Conn) CloseWith(last string) {
	c.Reply("%s", last)
	c.Flush()
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		c.SetReadDeadline(time.Now().Add(lingerTime))
		if c.cfg.drain != nil {
			stop := context.AfterFunc(c.cfg.drain, func() { c.SetReadDeadline(time.Now()) })
			defer stop()
		}
		io.CopyN(io.Discard, c.Conn, lingerBytes)
	}
	c.Conn.Close()
}

// BackendFailed logs a backend that failed before the relay started, at
// level error as nginx logs an upstream's failure, with the user and the
// backend: msg says what failed.
func (c *Conn) BackendFailed(msg string, login *Login, err error) {
	c.Log.LogAttrs(bg, errorlog.LevelError, msg, slog.String("user", login.User), slog.String("backend", login.Backend), redactedErr(err, login.User, login.Password))
}

// Release gives the session's buffers back to their pools, once nothing
// more is read or written through the Conn: when the session ends or its
// relay starts. It may be called more than once.
func (c *Conn) Release() {
	if c.r != nil {
		freeReader(c.r)
		freeWriter(c.w)
		c.r, c.w = nil, nil
	}
}

// Bounds of the lingering close.
const (
	lingerTime  = time.Second
	lingerBytes = 64 << 10
)

// Reply queues a formatted reply line; CR LF is appended. Replies are sent
// by the next read or by Flush.
func (c *Conn) Reply(format string, args ...any) {
	fmt.Fprintf(c.w, format, args...)
	c.w.WriteString("\r\n")
}

// Flush sends the queued replies within the client's time: a client that
// does not read them is closed when its time runs out, as one that sends
// nothing is. The replies to a login have the timeout from now, as nginx's
// do once it has stopped the timer for the login.
func (c *Conn) Flush() error {
	if c.w.Buffered() == 0 {
		return nil
	}
	deadline := c.deadline
	if c.rearm {
		deadline = time.Now().Add(c.cfg.Timeout)
	}
	if err := c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return c.w.Flush()
}

// Buffered returns the bytes the client sent past the last line read: what
// a client pipelined before proxying started.
func (c *Conn) Buffered() []byte {
	b, _ := c.r.Peek(c.r.Buffered())
	return b
}

// SendsWithin reports whether the client sends anything (or goes away)
// within d: SMTP clients must wait for the greeting. The dialogue's
// timeout then starts again, with the greeting.
func (c *Conn) SendsWithin(d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.arm()
	_, err := c.r.Peek(1)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}
