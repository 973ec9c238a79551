package engine

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/internal/accept"
	"github.com/mailproxy/mailproxy/internal/proxyproto"
	"github.com/mailproxy/mailproxy/session"
)

// Handler serves one client connection. The session is over when it
// returns, unless it handed the session on with end.Detach; the Loop then
// closes the connection. ctx is cancelled when the Loop is closed.
type Handler func(ctx context.Context, conn net.Conn, end *Ending)

// An Ending is what ends one session: closing its connection, the Loop
// forgetting it, giving back its connection slot. It runs when the
// session's handler returns, unless the handler handed the session on
// with Detach: a relayed session holds no goroutine of its own.
type Ending struct {
	steps    []func()
	detached bool
	meter    meter // what the session reports to its listener's Metrics
}

// Defer adds f to the session's end. The steps run in the reverse order
// of their adding, as deferred calls do.
func (e *Ending) Defer(f func()) { e.steps = append(e.steps, f) }

// Detach hands the session's end on: the handler's return no longer ends
// the session; the returned func does, and must be called once.
func (e *Ending) Detach() (end func()) {
	e.detached = true
	return e.run
}

func (e *Ending) run() {
	for i := len(e.steps) - 1; i >= 0; i-- {
		e.steps[i]()
	}
}

// Loop accepts connections from listeners, runs a Handler for each, and
// tracks them for a graceful shutdown. It is the engine of every protocol
// server. The zero value is ready to use; a Loop must not be copied after
// first use.
type Loop struct {
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	draining  bool // Shutdown or Close: no new listener is served
	killed    bool // Close: sessions are closed at once
	ctx       context.Context
	cancel    context.CancelFunc
	// drainCtx ends when Shutdown or Close starts (see Settings.drain).
	drainCtx context.Context
	drained  context.CancelFunc
	// running counts Serve calls and sessions. A session is added by its
	// Serve call, so Wait never races with an Add from zero.
	running sync.WaitGroup
}

func (l *Loop) init() {
	if l.ctx == nil {
		l.ctx, l.cancel = context.WithCancel(context.Background())
		l.drainCtx, l.drained = context.WithCancel(context.Background())
		l.listeners = make(map[net.Listener]struct{})
		l.conns = make(map[net.Conn]struct{})
	}
}

// Serve accepts connections on ln and handles each in its own goroutine
// until the Loop is shut down (it then returns session.ErrServerClosed)
// or ln can accept no more (then that error). An error that passes with
// time, such as descriptors running out, pauses the loop and is logged on
// log at a bounded rate. Serve may be called for several listeners at
// once.
func (l *Loop) Serve(ln net.Listener, log *slog.Logger, handle Handler) error {
	if !l.track(ln) {
		ln.Close()
		return session.ErrServerClosed
	}
	defer l.untrack(ln)
	var retry accept.Retrier
	for {
		conn, err := ln.Accept()
		switch {
		case err == nil:
			retry.Accepted()
			l.start(conn, log, handle)
		case l.isDraining():
			return session.ErrServerClosed
		case !accept.Retryable(err):
			return err
		default:
			time.Sleep(retry.Failed(log, ln.Addr().String(), err))
		}
	}
}

func (l *Loop) track(ln net.Listener) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.init()
	if l.draining {
		return false
	}
	l.listeners[ln] = struct{}{}
	l.running.Add(1)
	return true
}

func (l *Loop) untrack(ln net.Listener) {
	l.mu.Lock()
	delete(l.listeners, ln)
	l.mu.Unlock()
	l.running.Done()
}

// drainContext returns a context that ends when the Loop starts to shut
// down.
func (l *Loop) drainContext() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.init()
	return l.drainCtx
}

func (l *Loop) isDraining() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.draining
}

// start registers conn and runs its session. A connection accepted while
// the Loop shuts down is still served: it was accepted before its listener
// closed. After Close it is closed at once.
func (l *Loop) start(conn net.Conn, log *slog.Logger, handle Handler) {
	l.mu.Lock()
	if l.killed {
		l.mu.Unlock()
		conn.Close()
		return
	}
	l.conns[conn] = struct{}{}
	l.running.Add(1)
	ctx := l.ctx
	l.mu.Unlock()
	end := &Ending{}
	end.Defer(func() { l.finish(conn) })
	go func() {
		defer func() {
			if v := recover(); v != nil {
				logPanic(log, conn, v)
			}
			if !end.detached {
				end.run()
			}
		}()
		handle(ctx, conn, end)
	}()
}

// logPanic logs a session's handler that panicked, as net/http does: one
// session ends (its connection closed, without a reply) and the proxy goes
// on. The stack names functions and holds their arguments as machine
// words, never the bytes of a credential.
func logPanic(log *slog.Logger, conn net.Conn, v any) {
	log.LogAttrs(bg, errorlog.LevelAlert, "panic serving a session", slog.String("client", conn.RemoteAddr().String()),
		slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
}

func (l *Loop) finish(conn net.Conn) {
	conn.Close()
	l.mu.Lock()
	delete(l.conns, conn)
	l.mu.Unlock()
	l.running.Done()
}

// Shutdown stops accepting (closing the listeners) and waits for the
// sessions in progress to end by themselves. When ctx ends first, the
// remaining sessions are closed and ctx's error is returned.
func (l *Loop) Shutdown(ctx context.Context) error {
	l.drain(false)
	done := make(chan struct{})
	go func() {
		l.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		l.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every session at once, and waits for the
// session goroutines to return.
func (l *Loop) Close() error {
	l.drain(true)
	l.running.Wait()
	return nil
}

// drain stops serving listeners and, with kill, ends every session.
func (l *Loop) drain(kill bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.init()
	l.draining = true
	l.drained()
	for ln := range l.listeners {
		ln.Close()
	}
	if kill {
		l.killed = true
		l.cancel()
		for c := range l.conns {
			c.Close()
		}
	}
}

// Server is the life cycle every protocol server shares: settings fixed
// when it first serves, the accept loop, Shutdown and Close. A protocol
// server holds one and calls Serve from its own Serve method.
type Server struct {
	loop     Loop
	once     sync.Once
	settings *Settings
}

// Serve calls settle once, on the first call, then serves ln with handle
// until ln is closed or the server is shut down. settle fixes the server's
// settings.
//
// When ln is a session.Listener, its connections start as it says: with a
// PROXY protocol header, read within the settings' Timeout and trusted as
// their RealIP says; with a TLS handshake, run with the settings' TLS. Both
// happen in the session's goroutine, before handle's dialogue starts.
func (s *Server) Serve(ln net.Listener, settle func() *Settings, handle Handler) error {
	s.once.Do(func() {
		s.settings = settle()
		s.settings.drain = s.loop.drainContext()
	})
	l, ok := ln.(session.Listener)
	if ok {
		handle = s.opening(l.ProxyProtocol(), l.ImplicitTLS(), handle)
	}
	if lim, ok := ln.(session.Limiter); ok {
		handle = s.limited(lim, l != nil && l.ImplicitTLS(), handle)
	}
	handle = s.counted(ln, handle)
	return s.loop.Serve(ln, s.settings.Logger, handle)
}

// limited wraps handle so that a session beyond lim's bound is refused
// before anything else happens on its connection: with the protocol's
// reply on a plain connection, with a close on one of implicit TLS, where
// a reply in clear text would mean nothing to the client.
func (s *Server) limited(lim session.Limiter, implicitTLS bool, handle Handler) Handler {
	return func(ctx context.Context, conn net.Conn, end *Ending) {
		if !lim.Admit() {
			end.meter.ended(session.LimitConnections)
			if !implicitTLS {
				conn.SetWriteDeadline(time.Now().Add(refusalTimeout))
				io.WriteString(conn, s.settings.Replies.TooManyConnections+"\r\n")
			}
			return
		}
		end.Defer(lim.Release)
		ctx, release := withClientLimiter(ctx, lim)
		end.Defer(release)
		handle(ctx, conn, end)
	}
}

// refusalTimeout bounds the write of a refusal to a client beyond the
// connection limit.
const refusalTimeout = time.Second

// opening wraps handle for a listener whose connections start with a PROXY
// protocol header or a TLS handshake.
func (s *Server) opening(proxyHeader, implicitTLS bool, handle Handler) Handler {
	if !proxyHeader && !implicitTLS {
		return handle
	}
	st := s.settings
	return func(ctx context.Context, conn net.Conn, end *Ending) {
		if proxyHeader {
			conn = proxyproto.NewConn(conn, st.RealIP.Trusts(conn.RemoteAddr()), st.Timeout)
		}
		if implicitTLS {
			if st.TLS == nil {
				st.Logger.Error("TLS connection closed: no certificate configured", "client", conn.RemoteAddr().String())
				return
			}
			conn = tls.Server(conn, st.TLS.Config)
		}
		handle(ctx, conn, end)
	}
}

// Shutdown stops accepting and waits for the sessions to end, closing them
// when ctx ends first.
func (s *Server) Shutdown(ctx context.Context) error { return s.loop.Shutdown(ctx) }

// Close closes the listeners and every session at once.
func (s *Server) Close() error { return s.loop.Close() }
