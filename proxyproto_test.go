package mailproxy_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/pires/go-proxyproto"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/session"
)

// recordingAuth refuses every login and keeps the requests.
type recordingAuth struct {
	mu   sync.Mutex
	reqs []auth.Request
}

func (r *recordingAuth) Authenticate(_ context.Context, req *auth.Request) (*auth.Result, error) {
	r.record(req)
	return &auth.Result{Error: "recorded"}, nil
}

func (r *recordingAuth) record(req *auth.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, *req)
}

func (r *recordingAuth) requests() []auth.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]auth.Request(nil), r.reqs...)
}

func (r *recordingAuth) last() auth.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs[len(r.reqs)-1]
}

func proxyProtocolServer(t *testing.T, a auth.Authenticator, realIP session.RealIP, timeout time.Duration) string {
	t.Helper()
	lc := mailproxy.ListenConfig{Address: "127.0.0.1:0", ProxyProtocol: true}
	p := start(t, &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name: "pp", Listen: []mailproxy.ListenConfig{lc},
		Server: &imap.Server{Config: session.Config{Auth: a, Logger: testutil.Discard, RealIP: realIP, Timeout: timeout}},
	}}})
	return p.ServerAddrs(0)[0].String()
}

func header(version byte, command proxyproto.ProtocolVersionAndCommand) []byte {
	h := proxyproto.HeaderProxyFromAddrs(version,
		&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5555}, &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 993})
	h.Command = command
	b, _ := h.Format()
	return b
}

var loopback = session.RealIP{From: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

// The header's address becomes the client's only from a trusted peer
// (set_real_ip_from); the auth service gets the header's addresses either
// way, as nginx's Proxy-Protocol-* headers.
func TestProxyProtocolClientAddress(t *testing.T) {
	tests := []struct {
		name       string
		header     []byte
		realIP     session.RealIP
		wantClient string
		wantProxy  string // the header's source, "" for none
	}{
		{"v1 from a trusted peer", header(1, proxyproto.PROXY), loopback, "192.0.2.7:5555", "192.0.2.7:5555"},
		{"v2 from a trusted peer", header(2, proxyproto.PROXY), loopback, "192.0.2.7:5555", "192.0.2.7:5555"},
		{"v2 from an untrusted peer", header(2, proxyproto.PROXY), session.RealIP{}, "127.0.0.1", "192.0.2.7:5555"},
		{"v2 LOCAL keeps the peer", header(2, proxyproto.LOCAL), loopback, "127.0.0.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingAuth{}
			c := testutil.Dial(t, "tcp", proxyProtocolServer(t, rec, tt.realIP, 0))
			c.Conn.Write(tt.header)
			c.Line()
			c.Exchange("a LOGIN u p\r\n", "a NO [AUTHENTICATIONFAILED] recorded")
			req := rec.last()
			if got := req.ClientAddr.String(); got != tt.wantClient && !(tt.wantClient == "127.0.0.1" && hostOf(got) == "127.0.0.1") {
				t.Errorf("client %s, want %s", got, tt.wantClient)
			}
			switch {
			case tt.wantProxy == "" && req.Proxy != nil:
				t.Errorf("proxy info %+v, want none", req.Proxy)
			case tt.wantProxy != "" && (req.Proxy == nil || req.Proxy.Source.String() != tt.wantProxy || req.Proxy.Destination.String() != "198.51.100.1:993"):
				t.Errorf("proxy info %+v", req.Proxy)
			}
		})
	}
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// Malformed, missing and late headers end the connection before any
// greeting.
func TestProxyProtocolBadHeaders(t *testing.T) {
	for name, input := range map[string]string{
		"no header":        "a LOGIN u p\r\n",
		"garbage":          "PROXY NONSENSE\r\n",
		"truncated v1":     "PROXY TCP4 192.0.2.7",
		"v2 bad signature": "\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c",
		"silent":           "",
	} {
		t.Run(name, func(t *testing.T) {
			addr := proxyProtocolServer(t, &recordingAuth{}, loopback, 200*time.Millisecond)
			c := testutil.Dial(t, "tcp", addr)
			c.Conn.Write([]byte(input))
			if !c.Closed() {
				t.Fatal("connection served")
			}
		})
	}
}

// A session behind a PROXY header is relayed (from the raw socket, after
// what the header reader had read ahead).
func TestProxyProtocolRelay(t *testing.T) {
	be, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "alice", Password: "secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	addr := proxyProtocolServer(t, auth.Static{"alice": {Password: "secret", Backend: be.Addr}}, loopback, 0)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(header(2, proxyproto.PROXY))
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select through the relay: %v", err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}
