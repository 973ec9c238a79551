// Package mailproxy is an embeddable IMAP, POP3 and SMTP proxy in the
// manner of the nginx mail module.
//
// A program assembles it from three kinds of parts:
//
//   - an [Authenticator] (package auth) decides who a client is and which
//     backend serves it;
//   - a [Server] (imap.Server, pop3.Server, smtp.Server) runs one
//     protocol's dialogue for one server block and relays the session to the
//     backend;
//   - a [Listener] is a socket opened with the parameters of a listen
//     directive.
//
// A [Proxy] runs many Servers on many Listeners from one [Config], and
// reloads a new Config without dropping sessions or closing the sockets
// that did not change. The config package reads an nginx-style
// configuration into a Config; programs may equally build one in Go.
//
// Server.Serve takes a net.Listener, as http.Server does, so that a test
// or a program may serve any listener. A Proxy passes its Servers
// [Listener]s: the declared interface (session.Listener, which the
// protocol packages consume, and the listen parameters) through which a
// Server learns how the connections start, with a PROXY protocol header
// or a TLS handshake, and reads the header and runs the handshake with its
// own settings. The protocol packages need nothing from this package:
// dependencies point one way.
package mailproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/accept"
	"github.com/mailproxy/mailproxy/session"
)

// Authenticator decides logins and routes sessions; see package auth.
type Authenticator = auth.Authenticator

// Server serves one protocol on the listeners it is given: one server block.
// imap.Server, pop3.Server and smtp.Server implement it.
type Server interface {
	// Serve accepts connections on l until l is closed or the Server is
	// shut down. It may be called for several listeners at once.
	Serve(l net.Listener) error
	// Shutdown stops accepting and waits for the sessions in progress to
	// end, closing them when ctx ends first.
	Shutdown(ctx context.Context) error
}

// ErrProxyClosed is returned by [Proxy.Wait] and [Proxy.ListenAndServe]
// after Shutdown or Close.
var ErrProxyClosed = errors.New("mailproxy: proxy closed")

// Config is a whole proxy: every server block, and what they share.
type Config struct {
	Servers []ServerConfig
	// Resources are what the Servers share and must be closed after them,
	// such as the connection pool of an auth.HTTP. A Proxy closes them
	// when it is done with the Config: after a Reload replaced it, once
	// its sessions have ended (keeping those the new Config lists too),
	// and after Shutdown or Close. The config package puts here what Load
	// creates.
	Resources []io.Closer
	// ShutdownTimeout bounds how long the sessions of this Config go on
	// once it stops serving: after a Reload replaced it, and after
	// Shutdown (nginx's worker_shutdown_timeout). The sessions still open
	// then are closed. Zero waits for them to end, however long they take,
	// as nginx does by default.
	ShutdownTimeout time.Duration
	// ClientLimits bound what one client address may do, in every Server
	// together. The zero value limits nothing.
	ClientLimits ClientLimits
}

// Close closes the Resources of a Config that no Proxy runs: one that
// failed Check, Start or Reload, or was only checked.
func (c *Config) Close() error {
	return closeResources(c.Resources, nil)
}

// closeResources closes each of rs that keep does not list.
func closeResources(rs, keep []io.Closer) error {
	var errs []error
	for _, r := range rs {
		if !slices.Contains(keep, r) {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// ServerConfig is one server block: a protocol handler and where it listens.
type ServerConfig struct {
	// Name says where the block comes from in messages ("mail.conf:12").
	Name string
	// Listen lists the listen directives; at least one is needed.
	Listen []ListenConfig
	// Server is the protocol handler. It reads the PROXY protocol headers
	// of listens with ProxyProtocol, and runs the handshakes of those with
	// SSL, with its own settings.
	Server Server
}

// Proxy runs the Servers of a Config on their sockets.
//
// Build it with the Config and call ListenAndServe, or Start (after Listen,
// if sockets must be open before serving) and later Wait.
// Reload replaces the Config while running; Shutdown and Close end it.
type Proxy struct {
	// Config is read by Listen or Start; after that, use Reload to change it.
	Config *Config
	// Logger receives the proxy's logs. Nil means slog.Default().
	Logger *slog.Logger
	// MaxConnections bounds the client sessions served at once, by every
	// Server and generation together; a client beyond it is refused in its
	// protocol's words (IMAP "* BYE", POP3 "-ERR", SMTP "421") and closed,
	// so that a proxy under a flood still answers instead of running out
	// of descriptors. Zero means what the descriptor limit (RLIMIT_NOFILE)
	// leaves after a reserve (a thirty-second of it, 32 at least), at two
	// descriptors a session; negative means no limit. Read by Listen or
	// Start.
	MaxConnections int
	// Inherited are listening sockets opened by another process, for the
	// Proxy to serve instead of opening its own: those the old binary hands down
	// in an upgrade (see Files and InheritedListeners), or systemd's socket
	// activation (SystemdListeners). Each serves the socket the Config
	// plans for its local address and network ("0.0.0.0:143" for "listen
	// 143", "[::]:143" for "listen [::]:143"), with the listen parameters
	// that an open socket takes (buffers, keepalive, backlog; ipv6only and
	// reuseport stay as they were). Those that match none are closed and
	// logged, as nginx closes them. The Proxy owns them from Listen or
	// Start on; a Reload opens new sockets as usual.
	Inherited []net.Listener

	limit   *connLimit
	mu      sync.Mutex
	sockets map[string]*socket
	servers []Server // the current generation
	// retired are the Servers of previous generations still draining, by
	// generation; a drained generation is forgotten, so that nothing of
	// it stays reachable.
	retired map[int][]Server
	lastGen int
	// draining counts the previous generations whose Resources are not
	// closed yet.
	draining sync.WaitGroup
	released sync.Once // the running Config's Resources are closed
	opened   *opening  // the Config's sockets, between Listen and Start
	started  bool
	closed   bool
	done     chan struct{}
	serving  sync.WaitGroup
	errOnce  sync.Once
	err      error

	// inherited are the Inherited sockets not yet adopted, by endpoint key,
	// while Listen runs.
	inherited map[string]net.Listener
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}

// ListenAndServe opens every listener of p.Config, serves them, and
// returns when the Proxy is shut down (ErrProxyClosed) or a listener fails.
func (p *Proxy) ListenAndServe() error {
	if err := p.Start(); err != nil {
		return err
	}
	return p.Wait()
}

// Start opens every listener of p.Config, or adopts an Inherited one, and
// starts serving in the background; after Listen, it serves the sockets
// Listen opened. When a socket cannot be opened, none is left open.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opened == nil {
		if err := p.listen(); err != nil {
			return err
		}
	}
	p.begin(p.opened)
	p.opened = nil
	p.started = true
	return nil
}

// Listen opens every listener of p.Config, or adopts an Inherited one,
// without accepting on them: clients wait in the sockets' backlogs until
// Start. A program started as root calls Listen, gives up its privileges,
// and then calls Start, so that no session is served before the switch.
// Addrs and ServerAddrs know the addresses from Listen on. When a socket
// cannot be opened, none is left open.
func (p *Proxy) Listen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opened != nil {
		return errors.New("mailproxy: proxy already listening")
	}
	return p.listen()
}

// listen is Listen; the caller holds p.mu.
func (p *Proxy) listen() error {
	if p.started || p.closed {
		return errors.New("mailproxy: proxy already started")
	}
	if p.Config == nil {
		return errors.New("mailproxy: no Config")
	}
	p.sockets = make(map[string]*socket)
	p.done = make(chan struct{})
	p.limit = newConnLimit(p.MaxConnections, p.logger())
	p.takeInherited()
	op, err := p.open(context.Background(), p.Config)
	p.dropInherited(err == nil)
	if err != nil {
		return err
	}
	p.opened = op
	return nil
}

// Wait blocks until the Proxy is shut down or closed (ErrProxyClosed), or
// a socket fails: then that error.
func (p *Proxy) Wait() error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return errors.New("mailproxy: proxy not started")
	}
	<-done
	return p.err
}

func (p *Proxy) fail(err error) {
	p.errOnce.Do(func() {
		p.err = err
		close(p.done)
	})
}

// Reload replaces the running Config with cfg. Sockets whose address is
// kept stay open and go on accepting for the new Servers; the old Servers
// stop accepting and their sessions go on until they end, until the old
// Config's ShutdownTimeout, or until Shutdown. The counts of ClientLimits
// go on, under cfg's limits. When cfg is invalid or a new socket cannot
// be opened, the old Config goes on running and the error is returned.
func (p *Proxy) Reload(ctx context.Context, cfg *Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started || p.closed {
		return errors.New("mailproxy: proxy not running")
	}
	old, oldServers := p.Config, p.servers
	if err := p.apply(ctx, cfg); err != nil {
		return err
	}
	p.Config = cfg
	p.retire(old, oldServers)
	return nil
}

// retire shuts the old Servers down in the background: they stop accepting
// at once and drain until their sessions end, or until the old Config's
// ShutdownTimeout closes them. Then the old Config's Resources are
// closed, but for those the running Config has too, and the Proxy forgets
// the old Servers. The caller holds p.mu.
func (p *Proxy) retire(old *Config, servers []Server) {
	if p.retired == nil {
		p.retired = make(map[int][]Server)
	}
	p.lastGen++
	gen := p.lastGen
	p.retired[gen] = servers
	keep := p.Config.Resources
	p.draining.Go(func() {
		ctx, cancel := withTimeout(context.Background(), old.ShutdownTimeout)
		defer cancel()
		if errors.Is(shutdownServers(ctx, servers), context.DeadlineExceeded) {
			p.logger().Info("shutdown timeout: the sessions of the replaced configuration still open are closed",
				"worker_shutdown_timeout", old.ShutdownTimeout)
		}
		if err := closeResources(old.Resources, keep); err != nil {
			p.logger().Warn("closing the resources of a replaced configuration", "err", err)
		}
		p.mu.Lock()
		delete(p.retired, gen)
		p.mu.Unlock()
	})
}

// apply opens the sockets of cfg that are not open yet, routes every socket
// to the Servers of cfg, starts them, and closes the sockets cfg no longer
// has. It leaves everything as it was when it fails. The caller holds p.mu.
func (p *Proxy) apply(ctx context.Context, cfg *Config) error {
	op, err := p.open(ctx, cfg)
	if err != nil {
		return err
	}
	p.begin(op)
	return nil
}

// opening is a Config whose new sockets are open and whose routes are
// set, before they accept.
type opening struct {
	cfg      *Config
	plan     map[string]*socketPlan
	opened   map[string]*socket // the sockets opened for cfg
	byServer [][]*listener      // the listeners of each of cfg's Servers
}

// open opens the sockets cfg needs that are not open yet, and routes every
// socket of cfg to its Servers' listeners. The caller holds p.mu.
func (p *Proxy) open(ctx context.Context, cfg *Config) (*opening, error) {
	plan, err := makePlan(ctx, cfg)
	if err != nil {
		return nil, err
	}
	opened, err := p.openSockets(ctx, plan)
	if err != nil {
		return nil, err
	}
	maps.Copy(p.sockets, opened)
	byServer := make([][]*listener, len(cfg.Servers))
	for key, sp := range plan {
		s := p.sockets[key]
		s.setRoutes(sp, p.limit, byServer)
	}
	return &opening{cfg: cfg, plan: plan, opened: opened, byServer: byServer}, nil
}

// begin accepts on the sockets op opened, closes those its Config no
// longer names, and serves its Servers. The caller holds p.mu.
func (p *Proxy) begin(op *opening) {
	// Accepting starts once the routes are set: an inherited socket may
	// hold clients already.
	for _, s := range op.opened {
		p.serving.Add(1)
		go p.pump(s)
	}
	for key, s := range p.sockets {
		if _, ok := op.plan[key]; !ok {
			delete(p.sockets, key)
			s.close()
		}
	}
	p.limit.setClientLimits(op.cfg.ClientLimits)
	p.servers = p.servers[:0:0]
	for i, sc := range op.cfg.Servers {
		p.servers = append(p.servers, sc.Server)
		for _, l := range op.byServer[i] {
			go p.serve(sc, l)
		}
	}
}

// openSockets opens the planned sockets that are not open yet. On failure
// it closes the ones it opened and returns the error.
func (p *Proxy) openSockets(ctx context.Context, plan map[string]*socketPlan) (map[string]*socket, error) {
	opened := make(map[string]*socket)
	for _, key := range slices.Sorted(maps.Keys(plan)) {
		sp := plan[key]
		if have, ok := p.sockets[key]; ok {
			have.warnChanged(p.logger(), sp.config)
			continue
		}
		ln, err := p.adopt(key, sp)
		if ln == nil && err == nil {
			ln, err = openSocket(ctx, sp.endpoint, sp.config)
		}
		if err != nil {
			for _, s := range opened {
				s.ln.Close()
			}
			return nil, fmt.Errorf("%s: %w", sp.name, err)
		}
		opened[key] = newSocket(sp, ln)
	}
	return opened, nil
}

func (p *Proxy) serve(sc ServerConfig, l *listener) {
	defer l.Close() // a Server that stops by itself takes no more connections
	err := sc.Server.Serve(l)
	if err != nil && !errors.Is(err, session.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		p.logger().Error("server stopped", "server", sc.Name, "listen", l.Addr().String(), "err", err)
	}
}

// pump accepts connections on s until it is closed and hands each to the
// listener its local address is routed to.
//
// An accept error that passes with time (descriptors running out under a
// flood) pauses the loop, from 5ms up to a second, while the sessions go
// on; only a socket that can accept no more fails the Proxy.
func (p *Proxy) pump(s *socket) {
	defer p.serving.Done()
	defer s.closeRoutes()
	var retry accept.Retrier
	for {
		c, err := s.ln.Accept()
		switch {
		case err == nil:
			retry.Accepted()
			s.dispatch(c)
		case s.isClosed():
			return
		case !accept.Retryable(err):
			p.logger().Error("accept failed; socket closed", "listen", s.name, "err", err)
			p.fail(fmt.Errorf("mailproxy: %s: %w", s.name, err))
			return
		default:
			select {
			case <-time.After(retry.Failed(p.logger(), s.name, err)):
			case <-s.closed:
				return
			}
		}
	}
}

// Shutdown stops accepting on every socket and waits until every session
// has ended, and returns as soon as the last one has. ctx bounds the wait:
// when it ends first, the sessions still open are closed and ctx's error is
// returned. The running Config's ShutdownTimeout bounds it too, as
// worker_shutdown_timeout bounds nginx's graceful stop (the sessions of
// the Configs that reloads replaced are bounded by their own): when it
// expires, the sessions still open are closed and
// context.DeadlineExceeded is returned.
func (p *Proxy) Shutdown(ctx context.Context) error {
	retired, current, timeout := p.stop()
	p.serving.Wait() // the connections accepted last reach their Servers
	currentCtx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	var g sync.WaitGroup
	var errs [2]error
	g.Go(func() { errs[0] = shutdownServers(ctx, retired) })
	g.Go(func() { errs[1] = shutdownServers(currentCtx, current) })
	g.Wait()
	return errors.Join(append(errs[:], p.release())...)
}

// shutdownServers shuts every one of servers down with ctx, all at once.
func shutdownServers(ctx context.Context, servers []Server) error {
	var g sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		g.Go(func() { errs[i] = s.Shutdown(ctx) })
	}
	g.Wait()
	return errors.Join(errs...)
}

// withTimeout returns ctx bounded by d, or ctx itself when d is zero.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// release waits for the accept loops and the previous generations to end,
// and closes the running Config's Resources: the last step of Shutdown
// and Close, once every Server has ended.
func (p *Proxy) release() error {
	p.serving.Wait()
	p.draining.Wait()
	var err error
	p.released.Do(func() {
		p.mu.Lock()
		cfg, started := p.Config, p.started
		p.mu.Unlock()
		if started {
			err = cfg.Close()
		}
	})
	return err
}

// Close closes every socket and session at once. Servers that implement
// io.Closer are closed; the others are shut down with an ended context.
func (p *Proxy) Close() error {
	retired, current, _ := p.stop()
	servers := slices.Concat(retired, current)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	var errs []error
	for _, s := range servers {
		if c, ok := s.(io.Closer); ok {
			errs = append(errs, c.Close())
		} else if err := s.Shutdown(ended); !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, p.release())...)
}

// stop closes the sockets and returns every Server: those of the Configs
// that reloads replaced, and those of the running Config with its
// ShutdownTimeout.
func (p *Proxy) stop() (retired, current []Server, timeout time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, 0
	}
	p.closed = true
	for _, s := range p.sockets {
		s.close()
	}
	if p.done != nil {
		p.fail(ErrProxyClosed)
	}
	if p.started {
		timeout = p.Config.ShutdownTimeout
	}
	return slices.Concat(slices.Collect(maps.Values(p.retired))...), p.servers, timeout
}

// Addrs returns the address of every open socket, for example to learn the
// ports chosen for listen addresses with port 0.
func (p *Proxy) Addrs() []net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	addrs := make([]net.Addr, 0, len(p.sockets))
	for _, s := range p.sockets {
		addrs = append(addrs, s.ln.Addr())
	}
	return addrs
}

// ServerAddrs returns the addresses the i-th server of the running Config
// listens on, in the order of its listen directives.
func (p *Proxy) ServerAddrs(i int) []net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	var routes []servedRoute
	for _, s := range p.sockets {
		routes = append(routes, s.addrsOf(i)...)
	}
	return sortedAddrs(routes)
}

// Check reports the errors Start would find before opening any socket: a
// server without listen or handler, an address that does not resolve, or
// two servers on one address.
func (c *Config) Check(ctx context.Context) error {
	_, err := makePlan(ctx, c)
	return err
}
