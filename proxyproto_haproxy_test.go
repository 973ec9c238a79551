//go:build unix

package mailproxy_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// These tests put a real HAProxy in front of the proxy, as in
// examples/haproxy. HAProxy runs on 127.0.0.1 and the clients connect from
// clientSource, so that the proxy can tell the client from the load
// balancer.

// clientSource is the address the clients connect from.
const clientSource = "127.0.0.2"

// haproxyOnly trusts HAProxy's address, 127.0.0.1, and no other.
var haproxyOnly = session.RealIP{From: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}

// protocols has what the tests need of each protocol: its server, and a
// login that recordingAuth refuses (none for SMTP, which these tests only
// health-check).
var protocols = map[string]struct {
	server  func(session.Config) mailproxy.Server
	refused func(c *testutil.Client)
}{
	"imap": {
		func(cfg session.Config) mailproxy.Server { return &imap.Server{Config: cfg} },
		func(c *testutil.Client) {
			c.Exchange("", "* OK")
			c.Exchange("a LOGIN u p\r\n", "a NO [AUTHENTICATIONFAILED] recorded")
		},
	},
	"pop3": {
		func(cfg session.Config) mailproxy.Server { return &pop3.Server{Config: cfg} },
		func(c *testutil.Client) {
			c.Exchange("", "+OK")
			c.Exchange("USER u\r\n", "+OK")
			c.Exchange("PASS p\r\n", "-ERR recorded")
		},
	},
	"smtp": {
		func(cfg session.Config) mailproxy.Server { return &smtp.Server{Config: cfg} },
		nil,
	},
}

// behindHAProxy serves the server blocks, each on a PROXY protocol
// listener of its own, with HAProxy in front: frontend i of the HAProxy
// returned sends to block i, with the options and backend lines of
// frontends[i].
func behindHAProxy(t *testing.T, blocks []mailproxy.ServerConfig, frontends []testutil.HAProxyFrontend) *testutil.HAProxy {
	t.Helper()
	for i := range blocks {
		blocks[i].Name = "haproxy-" + frontends[i].Options
		blocks[i].Listen = []mailproxy.ListenConfig{{Address: "127.0.0.1:0", ProxyProtocol: true}}
	}
	p := start(t, &mailproxy.Config{Servers: blocks})
	for i := range frontends {
		frontends[i].Server = p.ServerAddrs(i)[0].String()
	}
	return testutil.StartHAProxy(t, frontends...)
}

// The auth service sees the client that HAProxy saw, address and port, in
// both versions of the header, when the proxy trusts HAProxy; when it does
// not, the client is HAProxy, and the header's client is only reported.
func TestHAProxyClientAddress(t *testing.T) {
	tests := []struct {
		name    string
		proto   string
		send    string // HAProxy's server options
		trusted bool
	}{
		{"imap send-proxy", "imap", "send-proxy", true},
		{"imap send-proxy-v2", "imap", "send-proxy-v2", true},
		// CRC32C, UNIQUE_ID and SSL (no TLS: client 0) TLVs; no AUTHORITY
		// without SNI.
		{"imap send-proxy-v2 with TLVs", "imap", "send-proxy-v2 proxy-v2-options ssl,unique-id,crc32c,authority", true},
		{"pop3 send-proxy-v2", "pop3", "send-proxy-v2", true},
		{"imap send-proxy untrusted", "imap", "send-proxy", false},
		{"imap send-proxy-v2 untrusted", "imap", "send-proxy-v2", false},
	}
	// One proxy and one HAProxy for all the cases.
	recs := make([]*recordingAuth, len(tests))
	blocks := make([]mailproxy.ServerConfig, len(tests))
	frontends := make([]testutil.HAProxyFrontend, len(tests))
	for i, tt := range tests {
		recs[i] = &recordingAuth{}
		cfg := session.Config{Auth: recs[i], Logger: testutil.Discard}
		if tt.trusted {
			cfg.RealIP = haproxyOnly
		}
		blocks[i] = mailproxy.ServerConfig{Server: protocols[tt.proto].server(cfg)}
		frontends[i] = testutil.HAProxyFrontend{Options: tt.send}
	}
	h := behindHAProxy(t, blocks, frontends)

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testutil.DialFrom(t, clientSource, h.Addrs[i])
			client := c.Conn.LocalAddr().String()
			protocols[tt.proto].refused(c)
			req := recs[i].last()
			if req.Proxy == nil || req.Proxy.Source.String() != client || req.Proxy.Destination.String() != h.Addrs[i] {
				t.Errorf("proxy info %+v, want %s to %s", req.Proxy, client, h.Addrs[i])
			}
			got := req.ClientAddr.String()
			switch {
			case tt.trusted && got != client:
				t.Errorf("client %s, want %s", got, client)
			case !tt.trusted && (got == client || hostOf(got) != "127.0.0.1"):
				t.Errorf("client %s, want HAProxy's 127.0.0.1:port", got)
			}
			testutil.WaitFor(t, "HAProxy's log of "+client, func() bool { return h.LogContains(client + " ") })
		})
	}
}

// The health checks of examples/haproxy/haproxy.cfg pass against the
// proxy: they come with a PROXY v2 header of their own (LOCAL, no
// client), get the greeting, and leave without a login.
func TestHAProxyHealthCheck(t *testing.T) {
	checks := exampleChecks(t)
	backends := []struct{ name, proto string }{{"imap", "imap"}, {"pop3", "pop3"}, {"smtp", "smtp"}, {"submission", "smtp"}}
	rec := &recordingAuth{}
	blocks := make([]mailproxy.ServerConfig, len(backends))
	frontends := make([]testutil.HAProxyFrontend, len(backends))
	for i, b := range backends {
		blocks[i] = mailproxy.ServerConfig{Server: protocols[b.proto].server(session.Config{Auth: rec, Logger: testutil.Discard, RealIP: haproxyOnly})}
		if len(checks[b.name]) == 0 {
			t.Fatalf("no tcp-check lines in backend %s of the example", b.name)
		}
		frontends[i] = testutil.HAProxyFrontend{Options: "send-proxy-v2 check inter 50ms", Backend: checks[b.name]}
	}
	h := behindHAProxy(t, blocks, frontends)
	for i, b := range backends {
		// A server starts as "UP 1/3" (going down), its check as "INI":
		// wait until the checks have settled it.
		var status, check string
		testutil.WaitFor(t, "the health checks of "+b.name, func() bool {
			status, check = h.ServerState(t, i)
			return (status == "UP" || status == "DOWN") && check != "INI"
		})
		if status != "UP" || check != "L7OK" {
			t.Errorf("%s: server %s, check %s; want UP, L7OK", b.name, status, check)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) != 0 {
		t.Errorf("health checks made %d auth requests", len(rec.reqs))
	}
}

// exampleChecks returns the health check lines ("option tcp-check",
// "tcp-check …") of each backend section of examples/haproxy/haproxy.cfg,
// by backend name.
func exampleChecks(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("examples/haproxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checks := map[string][]string{}
	backend := ""
	for s := bufio.NewScanner(f); s.Scan(); {
		line := s.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case !strings.HasPrefix(line, " "): // a section starts
			name, ok := strings.CutPrefix(line, "backend ")
			backend = ""
			if ok {
				backend = name
			}
		case backend != "":
			line = strings.TrimSpace(line)
			if line == "option tcp-check" || strings.HasPrefix(line, "tcp-check ") {
				checks[backend] = append(checks[backend], line)
			}
		}
	}
	return checks
}

// examples/haproxy/haproxy.cfg passes HAProxy's own check, with a
// certificate of our own for its TLS frontends.
func TestHAProxyExampleConfig(t *testing.T) {
	bin := testutil.LookPath(t, "haproxy")
	if _, err := user.Lookup("haproxy"); err != nil {
		t.Skip("no user haproxy, which the example runs as (Debian's haproxy package makes it)")
	}
	cert := filepath.Join(t.TempDir(), "mail.pem")
	writeSelfSigned(t, cert)
	cmd := exec.Command(bin, "-c", "-f", "examples/haproxy/haproxy.cfg")
	cmd.Env = append(os.Environ(), "MAIL_CERT="+cert)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// writeSelfSigned writes a certificate for mail.example.org and its key to
// one PEM file, as HAProxy's crt takes them.
func writeSelfSigned(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.example.org"},
		DNSNames:     []string{"mail.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// HAProxy, the proxy and Dovecot in a row: the proxy passes the client
// that HAProxy announced on to Dovecot in a PROXY header of its own
// (proxy_protocol on), and Dovecot logs it.
func TestHAProxyToDovecot(t *testing.T) {
	d := testutil.StartDovecot(t)
	cfg := session.Config{SendProxyProtocol: 1, Logger: testutil.Discard, RealIP: haproxyOnly}
	imapCfg, pop3Cfg := cfg, cfg
	imapCfg.Auth = auth.Static{d.User: {Password: d.Password, Backend: d.IMAPProxyAddr}}
	pop3Cfg.Auth = auth.Static{d.User: {Password: d.Password, Backend: d.POP3ProxyAddr}}
	h := behindHAProxy(t,
		[]mailproxy.ServerConfig{
			{Server: &imap.Server{Config: imapCfg}},
			{Server: &pop3.Server{Config: pop3Cfg}},
		},
		[]testutil.HAProxyFrontend{{Options: "send-proxy-v2"}, {Options: "send-proxy"}})

	tests := []struct {
		proto    string
		frontend int
		session  func(c *testutil.Client)
	}{
		{"imap", 0, func(c *testutil.Client) {
			c.Exchange("", "* OK")
			c.Exchange("a LOGIN "+d.User+" "+d.Password+"\r\n", "a OK")
			c.Exchange("b SELECT INBOX\r\n", "…b OK")
		}},
		{"pop3", 1, func(c *testutil.Client) {
			c.Exchange("", "+OK")
			c.Exchange("USER "+d.User+"\r\n", "+OK")
			c.Exchange("PASS "+d.Password+"\r\n", "+OK")
			c.Exchange("STAT\r\n", "+OK 0 0")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.proto, func(t *testing.T) {
			c := testutil.DialFrom(t, clientSource, h.Addrs[tt.frontend])
			tt.session(c)
			login := tt.proto + "-login: Info: Login: user=<" + d.User + ">, method=PLAIN, rip=" + hostOf(c.Conn.LocalAddr().String()) + ","
			testutil.WaitFor(t, "Dovecot's log of the client address", func() bool { return d.LogContains(login) })
		})
	}
}
