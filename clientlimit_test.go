package mailproxy_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/session"
)

// limitDialogue is what the tests of ClientLimits say and expect in one
// protocol: alice's password is "secret".
type limitDialogue struct {
	greeting string
	// login logs in with the password, expecting the first line of the
	// answer.
	login func(c *testutil.Client, password, want string)
	// failed answers a wrong password, then the session closes.
	failed string
	// refused and blocked are the closing lines of a client beyond its
	// connections and of one that failed too many logins; blockedLogin
	// answers a login it then tries in a session already open.
	refused, blocked, blockedLogin string
	ok                             string
	// logout ends a session and the answer's first line.
	logout [2]string
}

var limitDialogues = map[string]limitDialogue{
	"imap": {
		greeting: "* OK",
		login: func(c *testutil.Client, password, want string) {
			c.Exchange("a LOGIN alice "+password+"\r\n", want)
		},
		failed:       "a NO [AUTHENTICATIONFAILED] Invalid login or password",
		refused:      "* BYE Too many connections, try again later",
		blocked:      "* BYE Too many failed logins, try again later",
		blockedLogin: "a NO [UNAVAILABLE] Too many failed logins, try again later",
		ok:           "a OK",
		logout:       [2]string{"z LOGOUT\r\n", "* BYE"},
	},
	"pop3": {
		greeting: "+OK",
		login: func(c *testutil.Client, password, want string) {
			c.Exchange("USER alice\r\n", "+OK")
			c.Exchange("PASS "+password+"\r\n", want)
		},
		failed:       "-ERR Invalid login or password",
		refused:      "-ERR [SYS/TEMP] Too many connections, try again later",
		blocked:      "-ERR [SYS/TEMP] Too many failed logins, try again later",
		blockedLogin: "-ERR [SYS/TEMP] Too many failed logins, try again later",
		ok:           "+OK",
		logout:       [2]string{"QUIT\r\n", "+OK"},
	},
	"smtp": {
		greeting: "220 ",
		login: func(c *testutil.Client, password, want string) {
			c.Exchange("EHLO client.test\r\n", "…250 ")
			c.Exchange("AUTH PLAIN "+testutil.B64("\x00alice\x00"+password)+"\r\n", want)
		},
		failed:       "535 5.7.8 Invalid login or password",
		refused:      "421 4.7.0 Too many connections, try again later",
		blocked:      "421 4.7.0 Too many failed logins, try again later",
		blockedLogin: "421 4.7.0 Too many failed logins, try again later",
		ok:           "235 ",
		logout:       [2]string{"QUIT\r\n", "221 "},
	},
}

// limitBackends starts a backend of each protocol where alice logs in
// with "secret", and returns the Authenticator that routes her there.
func limitBackends(t *testing.T) map[string]auth.Authenticator {
	t.Helper()
	users := []mailtest.User{{Name: "alice", Password: "secret"}}
	im, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: testutil.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { im.Close() })
	po, err := mailtest.StartPOP3(mailtest.POP3Options{Users: users, Logger: testutil.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { po.Close() })
	sm, err := mailtest.StartSMTP(mailtest.SMTPOptions{Users: users, Domain: "backend.test", Logger: testutil.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })
	route := func(addr string) auth.Authenticator {
		return auth.Static{"alice": {Password: "secret", Backend: addr}}
	}
	return map[string]auth.Authenticator{"imap": route(im.Addr), "pop3": route(po.Addr), "smtp": route(sm.Addr)}
}

// startLimited serves one server of each protocol under limits, and
// returns their addresses.
func startLimited(t *testing.T, limits mailproxy.ClientLimits, listen mailproxy.ListenConfig, realIP session.RealIP) map[string]string {
	t.Helper()
	routes := limitBackends(t)
	names := []string{"imap", "pop3", "smtp"}
	cfg := &mailproxy.Config{ClientLimits: limits}
	for _, name := range names {
		cfg.Servers = append(cfg.Servers, mailproxy.ServerConfig{Name: name, Listen: []mailproxy.ListenConfig{listen},
			Server: protocols[name].server(session.Config{Auth: routes[name], Logger: testutil.Discard, RealIP: realIP})})
	}
	p := &mailproxy.Proxy{Config: cfg, Logger: testutil.Discard}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	addrs := map[string]string{}
	for i, name := range names {
		addrs[name] = p.ServerAddrs(i)[0].String()
	}
	return addrs
}

// A client address holds at most ClientLimits.Connections sessions; one
// more is refused in the protocol's words, another address is served, and
// a session that ends frees its place.
func TestClientConnectionLimit(t *testing.T) {
	addrs := startLimited(t, mailproxy.ClientLimits{Connections: 2}, local("127.0.0.1:0"), session.RealIP{})
	for name, d := range limitDialogues {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr, src, other := addrs[name], sources[name][0], sources[name][1]
			held := []*testutil.Client{testutil.DialFrom(t, src, addr), testutil.DialFrom(t, src, addr)}
			for _, c := range held {
				c.Exchange("", d.greeting)
			}
			testutil.DialFrom(t, src, addr).Exchange("", d.refused, "<closed>")
			c := testutil.DialFrom(t, other, addr)
			c.Exchange("", d.greeting)
			d.login(c, "secret", d.ok)

			held[0].Conn.Close()
			testutil.WaitFor(t, "the place of the closed session", func() bool {
				c := testutil.DialFrom(t, src, addr)
				return strings.HasPrefix(c.Line(), d.greeting)
			})
		})
	}
}

// sources are the client addresses of each protocol's subtests, two
// each, so that the subtests, which share a Proxy, count apart: the
// limits are on addresses, whatever the protocol.
var sources = map[string][2]string{
	"imap": {"127.0.0.11", "127.0.0.21"},
	"pop3": {"127.0.0.12", "127.0.0.22"},
	"smtp": {"127.0.0.13", "127.0.0.23"},
}

// After ClientLimits.LoginFailures refused logins within the window, the
// client's new connections are refused, and so is a login it tries in a
// session opened before, whatever the password, in the protocol's words.
// Another address logs in, and the client itself once the window has
// passed.
func TestClientLoginFailures(t *testing.T) {
	const window = 600 * time.Millisecond
	addrs := startLimited(t, mailproxy.ClientLimits{LoginFailures: 2, LoginWindow: window}, local("127.0.0.1:0"), session.RealIP{})
	for name, d := range limitDialogues {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr, src, otherSrc := addrs[name], sources[name][0], sources[name][1]
			early := testutil.DialFrom(t, src, addr)
			early.Exchange("", d.greeting)
			for range 2 {
				c := testutil.DialFrom(t, src, addr)
				c.Exchange("", d.greeting)
				d.login(c, "wrong", d.failed)
				c.Exchange("", "<closed>")
			}
			testutil.DialFrom(t, src, addr).Exchange("", d.blocked, "<closed>")
			d.login(early, "secret", d.blockedLogin)
			early.Exchange("", "<closed>")

			other := testutil.DialFrom(t, otherSrc, addr)
			other.Exchange("", d.greeting)
			d.login(other, "secret", d.ok)
			other.Exchange(d.logout[0], d.logout[1]) // a POP3 mailbox takes one session at a time

			testutil.WaitFor(t, "the end of the window", func() bool {
				c := testutil.DialFrom(t, src, addr)
				return strings.HasPrefix(c.Line(), d.greeting)
			})
			c := testutil.DialFrom(t, src, addr)
			c.Exchange("", d.greeting)
			d.login(c, "secret", d.ok)
		})
	}
}

// Real clients read the refusal of a blocked client's login as what it
// is: go-imap gets NO with the UNAVAILABLE code, go-smtp a 421 reply.
func TestClientLoginFailuresRealClients(t *testing.T) {
	addrs := startLimited(t, mailproxy.ClientLimits{LoginFailures: 1}, local("127.0.0.1:0"), session.RealIP{})

	// Both clients connect before the failure that blocks their address.
	ic, err := imapclient.DialInsecure(addrs["imap"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	sc, err := gosmtp.Dial(addrs["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Hello("client.test"); err != nil {
		t.Fatal(err)
	}

	failed := testutil.Dial(t, "tcp", addrs["imap"])
	failed.Exchange("", "* OK")
	limitDialogues["imap"].login(failed, "wrong", "a NO")

	var ie *imap.Error
	if err := ic.Login("alice", "secret").Wait(); !errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable {
		t.Errorf("go-imap login of a blocked client: %v, want NO [UNAVAILABLE]", err)
	}
	var se *gosmtp.SMTPError
	if err := sc.Auth(sasl.NewPlainClient("", "alice", "secret")); !errors.As(err, &se) || se.Code != 421 {
		t.Errorf("go-smtp AUTH of a blocked client: %v, want 421", err)
	}
}

// Behind a load balancer, the limits count the client that the PROXY
// protocol header names, when the balancer is trusted: two clients
// behind one balancer address are two clients.
func TestClientLimitsBehindProxyProtocol(t *testing.T) {
	trusted := session.RealIP{From: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	addrs := startLimited(t, mailproxy.ClientLimits{Connections: 1}, mailproxy.ListenConfig{Address: "127.0.0.1:0", ProxyProtocol: true}, trusted)
	via := func(client string) *testutil.Client {
		c := testutil.Dial(t, "tcp", addrs["imap"])
		fmt.Fprintf(c.Conn, "PROXY TCP4 %s 127.0.0.1 40000 143\r\n", client)
		return c
	}
	via("192.0.2.1").Exchange("", "* OK")
	via("192.0.2.2").Exchange("", "* OK")
	via("192.0.2.1").Exchange("", "* BYE Too many connections", "<closed>")
}
