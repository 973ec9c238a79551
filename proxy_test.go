package mailproxy_test

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/pop3"
)

func local(addr string) mailproxy.ListenConfig { return mailproxy.ListenConfig{Address: addr} }

func start(t *testing.T, cfg *mailproxy.Config) *mailproxy.Proxy {
	t.Helper()
	p := &mailproxy.Proxy{Config: cfg, Logger: testutil.Discard}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestProxyServesEachServer(t *testing.T) {
	cfg := &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "imap", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}, Server: &imap.Server{}},
		{Name: "pop3", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0"), local("[::1]:0")}, Server: &pop3.Server{}},
	}}
	p := start(t, cfg)
	if got := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String()).Line(); !strings.HasSuffix(got, "] IMAP4 ready") {
		t.Errorf("imap greeting %q", got)
	}
	addrs := p.ServerAddrs(1)
	if len(addrs) != 2 || !strings.HasPrefix(addrs[1].String(), "[::1]:") {
		t.Fatalf("pop3 addresses %v, want 127.0.0.1 then ::1 in listen order", addrs)
	}
	for _, a := range addrs {
		if got := testutil.Dial(t, "tcp", a.String()).Line(); got != "+OK POP3 ready" {
			t.Errorf("pop3 greeting on %v: %q", a, got)
		}
	}
}

func TestProxyConfigErrors(t *testing.T) {
	srv := func(name string, addrs ...string) mailproxy.ServerConfig {
		sc := mailproxy.ServerConfig{Name: name, Server: &imap.Server{}}
		for _, a := range addrs {
			sc.Listen = append(sc.Listen, local(a))
		}
		return sc
	}
	tests := []struct {
		name    string
		servers []mailproxy.ServerConfig
		want    string
	}{
		{"duplicate", []mailproxy.ServerConfig{srv("a.conf:3", "127.0.0.1:41143"), srv("a.conf:9", "127.0.0.1:41143")},
			"duplicate listen 127.0.0.1:41143 in a.conf:3 and a.conf:9"},
		{"duplicate bare port and star", []mailproxy.ServerConfig{srv("a.conf:3", "41143"), srv("a.conf:9", "*:41143")},
			"duplicate listen 0.0.0.0:41143 in a.conf:3 and a.conf:9"},
		{"duplicate in one server", []mailproxy.ServerConfig{srv("a.conf:3", "127.0.0.1:41143", "127.0.0.1:41143")},
			"duplicate listen 127.0.0.1:41143 in a.conf:3 and a.conf:3"},
		{"no listen", []mailproxy.ServerConfig{srv("a.conf:3")}, "a.conf:3: no listen directive"},
		{"no handler", []mailproxy.ServerConfig{{Name: "a.conf:3", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}}},
			"a.conf:3: no protocol handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: tt.servers}}
			err := p.Start()
			if err == nil {
				p.Close()
				t.Fatal("Start succeeded")
			}
			if err.Error() != tt.want {
				t.Fatalf("err = %q, want %q", err, tt.want)
			}
		})
	}
}

// Listen opens the sockets and knows their addresses, but serves no one
// until Start: a client waits in the backlog and is greeted once Start
// runs. A Proxy closed after Listen alone leaves no socket open.
func TestProxyListenThenStart(t *testing.T) {
	cfg := &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "pop3", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}, Server: &pop3.Server{}},
	}}
	p := &mailproxy.Proxy{Config: cfg, Logger: testutil.Discard}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Listen(); err == nil {
		t.Error("a second Listen succeeded")
	}
	addr := p.ServerAddrs(0)[0].String()
	c := testutil.Dial(t, "tcp", addr)
	c.Conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.R.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("before Start the client read %d bytes (%v), want to wait", n, err)
	}
	c.Conn.SetReadDeadline(time.Time{})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if got := c.Line(); got != "+OK POP3 ready" {
		t.Errorf("greeting after Start %q", got)
	}
	if err := p.Start(); err == nil {
		t.Error("a second Start succeeded")
	}

	idle := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "pop3", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}, Server: &pop3.Server{}},
	}}, Logger: testutil.Discard}
	if err := idle.Listen(); err != nil {
		t.Fatal(err)
	}
	idleAddr := idle.ServerAddrs(0)[0].String()
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if testutil.Accepting(idleAddr) {
		t.Errorf("%s still accepts after Close", idleAddr)
	}
}

func TestProxyStartFailureClosesEverything(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := testutil.FreeAddr(t)
	cfg := &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "ok", Listen: []mailproxy.ListenConfig{local(free)}, Server: &imap.Server{}},
		{Name: "busy", Listen: []mailproxy.ListenConfig{local(busy.Addr().String())}, Server: &imap.Server{}},
	}}
	p := &mailproxy.Proxy{Config: cfg}
	if err := p.Start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start = %v, want address already in use", err)
	}
	// The socket opened before the failure was closed again.
	l, err := net.Listen("tcp4", free)
	if err != nil {
		t.Fatalf("%s still taken after a failed Start: %v", free, err)
	}
	l.Close()
}

// A specific address on the port of a wildcard listen is served through the
// wildcard socket and routed by the local address, as nginx does without
// "bind".
func TestProxyWildcardRouting(t *testing.T) {
	_, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	cfg := &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "wild", Listen: []mailproxy.ListenConfig{local("*:" + port)}, Server: &pop3.Server{}},
		{Name: "one", Listen: []mailproxy.ListenConfig{local("127.0.0.1:" + port)}, Server: &imap.Server{}},
	}}
	p := start(t, cfg)
	if n := len(p.Addrs()); n != 1 {
		t.Errorf("%d sockets, want 1", n)
	}
	if got := testutil.Dial(t, "tcp", net.JoinHostPort("127.0.0.1", port)).Line(); !strings.HasSuffix(got, "] IMAP4 ready") {
		t.Errorf("127.0.0.1 served by %q, want the imap server", got)
	}
	if got := testutil.Dial(t, "tcp", net.JoinHostPort("127.0.0.2", port)).Line(); got != "+OK POP3 ready" {
		t.Errorf("127.0.0.2 served by %q, want the wildcard pop3 server", got)
	}
}

// With "bind" the specific address needs a socket of its own, which Linux
// refuses beside a listening wildcard on the same port: the error says so.
func TestProxyBindBesideWildcard(t *testing.T) {
	_, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	specific := local("127.0.0.1:" + port)
	specific.Bind = true
	p := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "wild", Listen: []mailproxy.ListenConfig{local("*:" + port)}, Server: &pop3.Server{}},
		{Name: "one", Listen: []mailproxy.ListenConfig{specific}, Server: &imap.Server{}},
	}}}
	err := p.Start()
	if err == nil {
		p.Close()
		t.Fatal("Start succeeded")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
}

func TestProxyShutdownDrains(t *testing.T) {
	cfg := &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "imap", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}, Server: &imap.Server{}},
	}}
	p := start(t, cfg)
	addr := p.ServerAddrs(0)[0]
	c := testutil.Dial(t, "tcp", addr.String())
	c.Line()

	done := make(chan error, 1)
	go func() { done <- p.Shutdown(context.Background()) }()
	testutil.WaitFor(t, "the listener to close", func() bool { return !testutil.Accepting(addr.String()) })
	// The session in progress goes on until the client ends it.
	if got := c.Cmd("a NOOP", "a "); got[0] != "a OK NOOP completed" {
		t.Fatalf("NOOP during shutdown: %q", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a session open", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.Cmd("a LOGOUT", "a ")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	if err := p.Wait(); !errors.Is(err, mailproxy.ErrProxyClosed) {
		t.Errorf("Wait = %v, want ErrProxyClosed", err)
	}
}

func TestProxyShutdownDeadlineClosesSessions(t *testing.T) {
	cfg := &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "imap", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}, Server: &imap.Server{}},
	}}
	p := start(t, cfg)
	c := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
	c.Line()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if !c.Closed() {
		t.Fatal("session still open after the shutdown deadline")
	}
}

func TestProxyReload(t *testing.T) {
	port := testutil.FreeAddr(t)
	oldSrv := &imap.Server{Capabilities: []string{"IMAP4rev1", "OLD"}}
	p := start(t, &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "imap", Listen: []mailproxy.ListenConfig{local(port)}, Server: oldSrv},
		{Name: "gone", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}, Server: &pop3.Server{}},
	}})
	goneAddr := p.ServerAddrs(1)[0]
	before := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
	before.Line()

	// A bad config (a duplicate) is refused and the old one keeps running.
	bad := &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "x:1", Listen: []mailproxy.ListenConfig{local(port)}, Server: &imap.Server{}},
		{Name: "x:2", Listen: []mailproxy.ListenConfig{local(port)}, Server: &imap.Server{}},
	}}
	if err := p.Reload(context.Background(), bad); err == nil {
		t.Fatal("Reload accepted a duplicate listen")
	}
	if got := testutil.Dial(t, "tcp", goneAddr.String()).Line(); got != "+OK POP3 ready" {
		t.Fatalf("old config not running after a bad reload: %q", got)
	}

	newSrv := &imap.Server{Capabilities: []string{"IMAP4rev1", "NEW"}}
	if err := p.Reload(context.Background(), &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "imap", Listen: []mailproxy.ListenConfig{local(port)}, Server: newSrv},
	}}); err != nil {
		t.Fatal(err)
	}
	// The client connected before the reload is still served by the old
	// server, on the same connection.
	if got := before.Cmd("a CAPABILITY", "a "); !strings.Contains(got[0], "OLD") {
		t.Errorf("old session answered %q", got)
	}
	// New clients on the same port meet the new server.
	after := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
	after.Line()
	if got := after.Cmd("b CAPABILITY", "b "); !strings.Contains(got[0], "NEW") {
		t.Errorf("new session answered %q", got)
	}
	if p.ServerAddrs(0)[0].String() != port {
		t.Errorf("port changed across reload: %v, want %s", p.ServerAddrs(0)[0], port)
	}
	// The socket the new config dropped is closed.
	testutil.WaitFor(t, "the dropped socket to close", func() bool { return !testutil.Accepting(goneAddr.String()) })
}

// Once the sessions of a replaced Config have ended, the Proxy keeps
// nothing of it: its Servers, with their TLS settings and auth_http
// clients, can be collected, however many reloads came before.
func TestProxyReloadForgetsDrainedServers(t *testing.T) {
	p := start(t, relayConfig(t, 0))
	old := weak.Make(p.Config.Servers[0].Server.(*imap.Server))
	c := relayed(t, p)
	if err := p.Reload(context.Background(), relayConfig(t, 0)); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	if old.Value() == nil {
		t.Fatal("the replaced Server was collected while its session runs")
	}
	c.Exchange("b LOGOUT\r\n", "* BYE", "b OK", "<closed>")
	testutil.WaitFor(t, "the drained Server to be collected", func() bool {
		runtime.GC()
		return old.Value() == nil
	})
}

// recorder is a Server that records the Listeners it is given.
type recorder struct {
	got chan mailproxy.ListenConfig
}

func (r *recorder) Serve(l net.Listener) error {
	ml, ok := l.(mailproxy.Listener)
	if !ok {
		return errors.New("not a mailproxy.Listener")
	}
	r.got <- ml.ListenConfig()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}

func (r *recorder) Shutdown(context.Context) error { return nil }

// A Server is handed Listeners that carry the listen parameters, for the
// TLS and PROXY protocol layers.
func TestProxyListenerCarriesParameters(t *testing.T) {
	r := &recorder{got: make(chan mailproxy.ListenConfig, 1)}
	lc := mailproxy.ListenConfig{Address: "127.0.0.1:0", SSL: true, ProxyProtocol: true, Backlog: 10}
	start(t, &mailproxy.Config{Servers: []mailproxy.ServerConfig{{Name: "r", Listen: []mailproxy.ListenConfig{lc}, Server: r}}})
	select {
	case got := <-r.got:
		if got != lc {
			t.Fatalf("got %+v, want %+v", got, lc)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve not called")
	}
}
