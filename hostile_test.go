package mailproxy_test

import (
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// This file holds what the tests of hostile clients share: a proxy of
// every protocol on every kind of listener, counting its sessions.

// hostileFull runs the hostile-client tests (TestSlowClients,
// TestHostileMemory) at full size; without it they run a short form
// that takes seconds:
//
//	go test -run 'SlowClients|Hostile|UnreadReplies' -v . -args -hostile.full
var hostileFull = flag.Bool("hostile.full", false, "run the slow-client and memory tests at full size (2000 clients)")

// hostileSize is n at full size, else short.
func hostileSize(full, short int) int {
	if *hostileFull {
		return full
	}
	return short
}

// hostileProxy is a proxy for hostile clients: IMAP, POP3 and SMTP, each
// on a plain listener, an implicit TLS one, one whose connections start
// with a PROXY protocol header, and a plain one with socket buffers of
// 4 KiB, in front of in-process backends.
type hostileProxy struct {
	// addrs holds each protocol's listeners: "plain", "tls", "proxy",
	// "tight".
	addrs map[string]map[string]string
	// sessions counts the sessions of every server.
	sessions *sessionCount
}

// sessionCount is a session.Metrics that counts the sessions open, and
// those that each limit ended.
type sessionCount struct {
	open  atomic.Int64
	mu    sync.Mutex
	ended map[session.Limit]int
}

func (c *sessionCount) Listener(string, string) session.ListenerMetrics { return c }
func (c *sessionCount) Opened()                                         { c.open.Add(1) }
func (c *sessionCount) Closed(limit session.Limit) {
	c.mu.Lock()
	c.ended[limit]++
	c.mu.Unlock()
	c.open.Add(-1)
}

// String lists the sessions ended by each limit ("" for none).
func (c *sessionCount) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.ended)
}

// endedBy returns the number of sessions that limit ended.
func (c *sessionCount) endedBy(limit session.Limit) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended[limit]
}

func (*sessionCount) TLSHandshake(bool)                       {}
func (*sessionCount) Auth(time.Duration, session.AuthOutcome) {}
func (*sessionCount) BackendConnected(time.Duration)          {}
func (*sessionCount) BackendFailed(session.BackendFailure)    {}
func (*sessionCount) Relayed(int64, int64)                    {}

// hostileProtocols are the protocols served, in the order of their
// servers.
var hostileProtocols = []string{"imap", "pop3", "smtp"}

// startHostileProxy starts a hostileProxy whose servers take cfg (with
// the Authenticator filled in) and accept alice/secret.
func startHostileProxy(t *testing.T, cfg session.Config) *hostileProxy {
	t.Helper()
	b := startBackendsFor(t, []mailtest.User{{Name: "alice", Password: "secret"}})
	backends := map[string]string{"imap": b.imap.Addr, "pop3": b.pop3.Addr, "smtp": b.smtp.Addr}
	cfg.TLS = &session.TLS{Config: testutil.ServerTLS(t)}
	count := &sessionCount{ended: map[session.Limit]int{}}
	cfg.Metrics = count
	if cfg.Logger == nil {
		cfg.Logger = testutil.Discard
	}
	pc := &mailproxy.Config{}
	for _, proto := range hostileProtocols {
		c := cfg
		c.Auth = auth.Static{"alice": {Password: "secret", Backend: backends[proto]}}
		var srv mailproxy.Server
		switch proto {
		case "imap":
			srv = &imap.Server{Config: c}
		case "pop3":
			srv = &pop3.Server{Config: c}
		case "smtp":
			srv = &smtp.Server{Config: c}
		}
		pc.Servers = append(pc.Servers, mailproxy.ServerConfig{Name: proto, Server: srv, Listen: []mailproxy.ListenConfig{
			{Address: "127.0.0.1:0"},
			{Address: "127.0.0.1:0", SSL: true},
			{Address: "127.0.0.1:0", ProxyProtocol: true},
			{Address: "127.0.0.1:0", RcvBuf: 4096, SndBuf: 4096},
		}})
	}
	p := start(t, pc)
	hp := &hostileProxy{addrs: map[string]map[string]string{}, sessions: count}
	for i, proto := range hostileProtocols {
		a := p.ServerAddrs(i)
		hp.addrs[proto] = map[string]string{"plain": a[0].String(), "tls": a[1].String(), "proxy": a[2].String(), "tight": a[3].String()}
	}
	return hp
}
