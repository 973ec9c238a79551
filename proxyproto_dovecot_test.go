//go:build unix

package mailproxy_test

import (
	"testing"

	"github.com/pires/go-proxyproto"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// proxy_protocol on: the backend gets a PROXY header with the real client.
// Dovecot's haproxy listener refuses connections without one, so a login
// there proves the header, and Dovecot logs the client the load balancer
// in front of the proxy announced.
func TestProxyProtocolToDovecot(t *testing.T) {
	d := testutil.StartDovecot(t)
	lc := mailproxy.ListenConfig{Address: "127.0.0.1:0", ProxyProtocol: true}
	p := start(t, &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name: "pp", Listen: []mailproxy.ListenConfig{lc},
		Server: &imap.Server{Config: session.Config{
			SendProxyProtocol: 1, Logger: testutil.Discard, RealIP: loopback,
			Auth: auth.Static{d.User: {Password: d.Password, Backend: d.IMAPProxyAddr}},
		}},
	}}})
	c := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
	c.Conn.Write(header(1, proxyproto.PROXY))
	c.Line()
	c.Exchange("a LOGIN "+d.User+" "+d.Password+"\r\n", "a OK")
	c.Exchange("b SELECT INBOX\r\n", "…b OK")
	testutil.WaitFor(t, "Dovecot's log of the client address", func() bool { return d.LogContains("rip=192.0.2.7") })
}
