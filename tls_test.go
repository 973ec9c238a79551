package mailproxy_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// exchange is one command and the prefix of the last line of its reply.
type exchange struct{ send, until string }

// dialogue is what the TLS tests say in each protocol.
type dialogue struct {
	name      string
	server    func(session.Config) mailproxy.Server
	greeting  string
	hello     []exchange // before anything else (SMTP's EHLO)
	caps      exchange   // lists the capabilities
	capsFirst string     // the first line of their reply
	startTLS  exchange   // asks for TLS; until is the go-ahead
	login     []exchange // logs in as alice/secret
	tlsFirst  string     // the refusal of the login before TLS with starttls only
	offer     string     // the capability that offers STARTTLS
	noCert    string     // the reply to a TLS session without a required certificate
	badCert   string     // the reply to a TLS session with an invalid certificate
	backendOf func(*tlsBackends) string
}

var dialogues = []dialogue{
	{
		name:      "imap",
		server:    func(c session.Config) mailproxy.Server { return &imap.Server{Config: c} },
		greeting:  "* OK [CAPABILITY ",
		caps:      exchange{"c CAPABILITY", "c OK"},
		capsFirst: "* CAPABILITY ",
		startTLS:  exchange{"s STARTTLS", "s OK Begin TLS"},
		login:     []exchange{{"a LOGIN alice secret", "a "}},
		tlsFirst:  "a NO [PRIVACYREQUIRED] Run STARTTLS first",
		offer:     " STARTTLS",
		noCert:    "* BYE No required SSL certificate was sent",
		badCert:   "* BYE SSL certificate error",
		backendOf: func(b *tlsBackends) string {
			return b.imap.Addr
		},
	},
	{
		name:      "pop3",
		server:    func(c session.Config) mailproxy.Server { return &pop3.Server{Config: c} },
		greeting:  "+OK POP3 ready",
		caps:      exchange{"CAPA", "."},
		capsFirst: "+OK Capability list follows",
		startTLS:  exchange{"STLS", "+OK Begin TLS"},
		login:     []exchange{{"USER alice", "+OK"}, {"PASS secret", ""}},
		tlsFirst:  "-ERR Run STLS first",
		offer:     "STLS",
		noCert:    "-ERR No required SSL certificate was sent",
		badCert:   "-ERR SSL certificate error",
		backendOf: func(b *tlsBackends) string {
			return b.pop3.Addr
		},
	},
	{
		name:      "smtp",
		server:    func(c session.Config) mailproxy.Server { return &smtp.Server{Config: c} },
		greeting:  "220 ",
		hello:     []exchange{{"EHLO client.test", "250 "}},
		caps:      exchange{"EHLO client.test", "250 "},
		capsFirst: "250-proxy.test",
		startTLS:  exchange{"STARTTLS", "220 2.0.0"},
		login:     []exchange{{"EHLO client.test", "250 "}, {"AUTH PLAIN AGFsaWNlAHNlY3JldA==", ""}},
		tlsFirst:  "530 5.7.0 Must issue a STARTTLS command first",
		offer:     "250 STARTTLS", // the last line, after AUTH
		noCert:    "421 4.7.1 No required SSL certificate was sent",
		badCert:   "421 4.7.1 SSL certificate error",
		backendOf: func(b *tlsBackends) string {
			return b.smtp.Addr
		},
	},
}

// tlsBackends are in-process mail servers behind the proxy.
type tlsBackends struct {
	imap *mailtest.IMAPServer
	pop3 *mailtest.POP3Server
	smtp *mailtest.SMTPServer
}

func startBackends(t *testing.T) *tlsBackends {
	return startBackendsFor(t, []mailtest.User{{Name: "alice", Password: "secret"}})
}

// startBackendsFor starts the three backends with users.
func startBackendsFor(t *testing.T, users []mailtest.User) *tlsBackends {
	var b tlsBackends
	var err error
	if b.imap, err = mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: testutil.Discard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.imap.Close() })
	if b.pop3, err = mailtest.StartPOP3(mailtest.POP3Options{Users: users, Logger: testutil.Discard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.pop3.Close() })
	if b.smtp, err = mailtest.StartSMTP(mailtest.SMTPOptions{Users: users, Logger: testutil.Discard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.smtp.Close() })
	return &b
}

// routeAuth accepts alice/secret or what check allows (and any EXTERNAL
// login), routes to one backend and keeps the requests.
type routeAuth struct {
	recordingAuth
	backend string
	check   func(user, pass string) bool // nil accepts alice/secret
}

func (a *routeAuth) Authenticate(_ context.Context, req *auth.Request) (*auth.Result, error) {
	a.record(req)
	good := req.User == "alice" && req.Password == "secret"
	if a.check != nil {
		good = a.check(req.User, req.Password)
	}
	if req.Method != auth.MethodExternal && !good {
		return &auth.Result{Error: "Invalid login", Wait: 1}, nil
	}
	return &auth.Result{Backend: a.backend, User: "alice", Password: "secret"}, nil
}

// tlsFixture is a CA, the proxy's certificate and the client's view.
type tlsFixture struct {
	ca     *testutil.Cert
	server tls.Certificate
	client *tls.Config // trusts the CA
}

func newTLSFixture(t *testing.T) *tlsFixture {
	ca := testutil.NewCA(t, "mailproxy test CA")
	return &tlsFixture{
		ca:     ca,
		server: ca.Issue(t, testutil.CertOptions{}).TLS(),
		client: &tls.Config{RootCAs: testutil.Pool(ca), ServerName: "localhost"},
	}
}

// serve starts a Proxy with one server of d's protocol on one listener,
// TLS configured by t (nil for none), and returns its address.
func (f *tlsFixture) serve(tb *testing.T, d dialogue, a auth.Authenticator, lc mailproxy.ListenConfig, t *session.TLS) string {
	if t != nil && t.Config == nil {
		t.Config = &tls.Config{Certificates: []tls.Certificate{f.server}}
	}
	lc.Address = "127.0.0.1:0"
	p := start(tb, &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name: d.name, Listen: []mailproxy.ListenConfig{lc},
		Server: d.server(session.Config{ServerName: "proxy.test", Auth: a, Logger: testutil.Discard, TLS: t}),
	}}})
	return p.ServerAddrs(0)[0].String()
}

// eachProtocol runs test, in a subtest per protocol, on a new connection
// (not yet greeted) to a server of that protocol with the TLS settings
// (copied; nil for none) on a listener like lc, routed to backends.
func (f *tlsFixture) eachProtocol(t *testing.T, backends *tlsBackends, lc mailproxy.ListenConfig, settings *session.TLS, test func(t *testing.T, d dialogue, c *testutil.Client, a *routeAuth)) {
	for _, d := range dialogues {
		t.Run(d.name, func(t *testing.T) {
			a := &routeAuth{}
			if backends != nil {
				a.backend = d.backendOf(backends)
			}
			var st *session.TLS
			if settings != nil {
				copied := *settings
				st = &copied
			}
			c := testutil.Dial(t, "tcp", f.serve(t, d, a, lc, st))
			if lc.SSL {
				c.StartTLS(f.client)
			}
			test(t, d, c, a)
		})
	}
}

// say runs exchanges and returns the last reply line of the last one.
func say(c *testutil.Client, xs ...exchange) string {
	last := ""
	for _, x := range xs {
		lines := c.Cmd(x.send, x.until)
		last = lines[len(lines)-1]
	}
	return last
}

func loggedIn(reply string) bool {
	return strings.HasPrefix(reply, "a OK") || strings.HasPrefix(reply, "+OK") || strings.HasPrefix(reply, "235 ")
}

// Implicit TLS (listen … ssl): the handshake comes first, then the whole
// dialogue and the relay run through TLS, and the Authenticator learns of
// it (Auth-SSL: on).
func TestTLSImplicit(t *testing.T) {
	f, backends := newTLSFixture(t), startBackends(t)
	f.eachProtocol(t, backends, mailproxy.ListenConfig{SSL: true}, &session.TLS{StartTLS: session.StartTLSOn}, func(t *testing.T, d dialogue, c *testutil.Client, a *routeAuth) {
		if got := c.Line(); !strings.HasPrefix(got, d.greeting) {
			t.Fatalf("greeting %q", got)
		}
		caps := strings.Join(c.Cmd(d.caps.send, d.caps.until), "\n")
		if strings.Contains(caps, d.offer) {
			t.Errorf("STARTTLS offered over TLS:\n%s", caps)
		}
		if reply := say(c, d.login...); !loggedIn(reply) {
			t.Fatalf("login: %q", reply)
		}
		reqs := a.requests()
		if len(reqs) != 1 || reqs[0].TLS == nil {
			t.Fatalf("Authenticator saw %d requests, TLS %v", len(reqs), reqs)
		}
	})
}

// STARTTLS is offered while TLS is not active; after the upgrade the
// capabilities are those of a TLS session, and the login runs through TLS.
func TestSTARTTLS(t *testing.T) {
	f, backends := newTLSFixture(t), startBackends(t)
	f.eachProtocol(t, backends, mailproxy.ListenConfig{}, &session.TLS{StartTLS: session.StartTLSOn}, func(t *testing.T, d dialogue, c *testutil.Client, a *routeAuth) {
		c.Line()
		if caps := strings.Join(c.Cmd(d.caps.send, d.caps.until), "\n"); !strings.Contains(caps, d.offer) {
			t.Fatalf("STARTTLS not offered:\n%s", caps)
		}
		say(c, d.startTLS)
		c.StartTLS(f.client)
		if caps := strings.Join(c.Cmd(d.caps.send, d.caps.until), "\n"); strings.Contains(caps, d.offer) {
			t.Errorf("STARTTLS still offered after TLS:\n%s", caps)
		}
		if reply := say(c, d.login...); !loggedIn(reply) {
			t.Fatalf("login: %q", reply)
		}
		if reqs := a.requests(); len(reqs) != 1 || reqs[0].TLS == nil {
			t.Fatalf("Authenticator saw %v", reqs)
		}
	})
}

// ALPN as nginx answers it (ngx_mail_ssl_alpn_select), with implicit TLS
// and STARTTLS: a client that offers protocols but not the server's own
// is refused in the handshake with the no_application_protocol alert (the
// ALPACA defence of RFC 7301); one that offers it has it selected, one
// that offers none is served.
func TestTLSALPN(t *testing.T) {
	f := newTLSFixture(t)
	for _, mode := range []struct {
		name string
		lc   mailproxy.ListenConfig
	}{{"implicit", mailproxy.ListenConfig{SSL: true}}, {"starttls", mailproxy.ListenConfig{}}} {
		for _, d := range dialogues {
			t.Run(mode.name+"/"+d.name, func(t *testing.T) {
				other := "pop3"
				if d.name == "pop3" {
					other = "imap"
				}
				addr := f.serve(t, d, &routeAuth{}, mode.lc, &session.TLS{StartTLS: session.StartTLSOn})
				for _, tt := range []struct {
					name    string
					offer   []string
					chosen  string // "" with refused: no protocol selected
					refused bool
				}{
					{"none offered", nil, "", false},
					{"its own", []string{d.name}, d.name, false},
					{"its own among others", []string{"http/1.1", d.name, "h2"}, d.name, false},
					{"http/1.1 only", []string{"http/1.1"}, "", true},
					{"another mail protocol", []string{other}, "", true},
				} {
					t.Run(tt.name, func(t *testing.T) {
						c := testutil.Dial(t, "tcp", addr)
						if !mode.lc.SSL {
							c.Line()
							say(c, d.hello...)
							say(c, d.startTLS)
						}
						cfg := f.client.Clone()
						cfg.NextProtos = tt.offer
						tc := tls.Client(c.Conn, cfg)
						err := tc.Handshake()
						if tt.refused {
							if err == nil || !strings.Contains(err.Error(), "no application protocol") {
								t.Fatalf("handshake: %v, want the no_application_protocol alert", err)
							}
							return
						}
						if err != nil {
							t.Fatalf("handshake: %v", err)
						}
						if got := tc.ConnectionState().NegotiatedProtocol; got != tt.chosen {
							t.Errorf("selected %q, want %q", got, tt.chosen)
						}
						c.Conn, c.R = tc, bufio.NewReader(tc)
						if mode.lc.SSL {
							c.Line() // the greeting
						}
						say(c, d.hello...)
						if first := c.Cmd(d.caps.send, d.caps.until)[0]; !strings.HasPrefix(first, d.capsFirst) {
							t.Errorf("served %q", first)
						}
					})
				}
			})
		}
	}
}

// Without a certificate nothing is offered and the command is an error.
func TestSTARTTLSNotConfigured(t *testing.T) {
	f := newTLSFixture(t)
	f.eachProtocol(t, nil, mailproxy.ListenConfig{}, nil, func(t *testing.T, d dialogue, c *testutil.Client, a *routeAuth) {
		c.Line()
		say(c, d.hello...)
		if caps := strings.Join(c.Cmd(d.caps.send, d.caps.until), "\n"); strings.Contains(caps, d.offer) {
			t.Fatalf("STARTTLS offered without a certificate:\n%s", caps)
		}
		c.Send("%s", d.startTLS.send)
		if got := c.Line(); strings.HasPrefix(got, d.startTLS.until) {
			t.Fatalf("STARTTLS accepted: %q", got)
		}
	})
}

// With starttls only, logins are refused until TLS is active (IMAP
// announces LOGINDISABLED), and allowed after.
func TestSTARTTLSOnly(t *testing.T) {
	f, backends := newTLSFixture(t), startBackends(t)
	f.eachProtocol(t, backends, mailproxy.ListenConfig{}, &session.TLS{StartTLS: session.StartTLSOnly}, func(t *testing.T, d dialogue, c *testutil.Client, a *routeAuth) {
		greeting := c.Line()
		if d.name == "imap" && !strings.Contains(greeting, "STARTTLS LOGINDISABLED]") {
			t.Errorf("greeting %q lacks STARTTLS LOGINDISABLED", greeting)
		}
		caps := strings.Join(c.Cmd(d.caps.send, d.caps.until), "\n")
		if strings.Contains(caps, "AUTH") || strings.Contains(caps, "SASL ") {
			t.Errorf("login methods offered before TLS:\n%s", caps)
		}
		login := d.login[len(d.login)-1]
		if d.name == "pop3" {
			login = d.login[0]
		}
		if got := say(c, exchange{login.send, ""}); got != d.tlsFirst {
			t.Errorf("login before TLS: %q, want %q", got, d.tlsFirst)
		}
		say(c, d.startTLS)
		c.StartTLS(f.client)
		if reply := say(c, d.login...); !loggedIn(reply) {
			t.Fatalf("login after TLS: %q", reply)
		}
	})
}

// A client (or a man in the middle) that pipelines commands after
// STARTTLS in the same packet must not have them run inside the TLS
// session: the proxy discards them, and answers nothing in clear text after
// the go-ahead.
func TestSTARTTLSInjection(t *testing.T) {
	f, backends := newTLSFixture(t), startBackends(t)
	f.eachProtocol(t, backends, mailproxy.ListenConfig{}, &session.TLS{StartTLS: session.StartTLSOn}, func(t *testing.T, d dialogue, c *testutil.Client, a *routeAuth) {
		c.Line()
		say(c, d.hello...)
		injected := d.startTLS.send + "\r\n"
		for _, x := range d.login {
			injected += x.send + "\r\n"
		}
		c.Exchange(injected, d.startTLS.until)
		c.StartTLS(f.client) // fails on anything sent in clear text
		// The first reply in TLS answers the first command sent in TLS.
		if first := c.Cmd(d.caps.send, d.caps.until)[0]; !strings.HasPrefix(first, d.capsFirst) {
			t.Fatalf("an injected command ran: %q", first)
		}
		if reqs := a.requests(); len(reqs) != 0 {
			t.Fatalf("the injected login reached the Authenticator: %v", reqs)
		}
	})
}

// Client certificates are checked after the handshake, as nginx does: the
// outcome reaches the Authenticator (Auth-SSL-Verify), and a session that
// ssl_verify_client refuses gets the protocol's error.
func TestTLSClientCertificates(t *testing.T) {
	f, backends := newTLSFixture(t), startBackends(t)
	other := testutil.NewCA(t, "another CA")
	inter := f.ca.Issue(t, testutil.CertOptions{CA: true, Subject: pkix.Name{CommonName: "intermediate"}})
	good := f.ca.Issue(t, testutil.CertOptions{Client: true, Subject: pkix.Name{CommonName: "alice", Organization: []string{"Example, Inc."}}})
	expired := f.ca.Issue(t, testutil.CertOptions{Client: true, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	stranger := other.Issue(t, testutil.CertOptions{Client: true})
	selfSigned := testutil.NewCA(t, "myself")
	deep := inter.Issue(t, testutil.CertOptions{Client: true})
	revoked := f.ca.Issue(t, testutil.CertOptions{Client: true})
	crl := revocationList(t, f.ca, revoked)

	tests := []struct {
		name   string
		verify session.VerifyClient
		depth  int
		cert   []*testutil.Cert // the client's chain; nil sends none
		reply  string           // the first line: the greeting or the refusal
		want   string           // Auth-SSL-Verify
	}{
		{"on, valid", session.VerifyOn, 0, []*testutil.Cert{good}, "* OK", "SUCCESS"},
		{"on, none", session.VerifyOn, 0, nil, dialogues[0].noCert, ""},
		{"on, unknown CA", session.VerifyOn, 0, []*testutil.Cert{stranger}, dialogues[0].badCert, ""},
		{"on, expired", session.VerifyOn, 0, []*testutil.Cert{expired}, dialogues[0].badCert, ""},
		{"on, revoked", session.VerifyOn, 0, []*testutil.Cert{revoked}, dialogues[0].badCert, ""},
		{"on, chain too long", session.VerifyOn, 1, []*testutil.Cert{deep, inter}, dialogues[0].badCert, ""},
		{"on, chain within depth", session.VerifyOn, 2, []*testutil.Cert{deep, inter}, "* OK", "SUCCESS"},
		{"optional, none", session.VerifyOptional, 0, nil, "* OK", "NONE"},
		{"optional, expired", session.VerifyOptional, 0, []*testutil.Cert{expired}, dialogues[0].badCert, ""},
		{"optional_no_ca, unknown CA", session.VerifyOptionalNoCA, 0, []*testutil.Cert{stranger}, "* OK", "FAILED:unable to get local issuer certificate"},
		{"optional_no_ca, self-signed", session.VerifyOptionalNoCA, 0, []*testutil.Cert{selfSigned}, "* OK", "FAILED:self-signed certificate"},
		{"optional_no_ca, expired", session.VerifyOptionalNoCA, 0, []*testutil.Cert{expired}, dialogues[0].badCert, ""},
		{"off, valid", session.VerifyOff, 0, []*testutil.Cert{good}, "* OK", ""},
	}
	d := dialogues[0]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &routeAuth{backend: backends.imap.Addr}
			settings := &session.TLS{Verify: tt.verify, VerifyDepth: tt.depth, ClientCAs: []*x509.Certificate{f.ca.Cert}, CRLs: []*x509.RevocationList{crl}}
			addr := f.serve(t, d, a, mailproxy.ListenConfig{SSL: true}, settings)
			cfg := f.client.Clone()
			if tt.cert != nil {
				// Sent whatever CAs the proxy names, as OpenSSL's clients do.
				chain := tt.cert[0].TLS(tt.cert[1:]...)
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &chain, nil }
			}
			c := testutil.DialTLS(t, addr, cfg)
			if got := c.Line(); !strings.HasPrefix(got, tt.reply) {
				t.Fatalf("first line %q, want %q", got, tt.reply)
			}
			if !strings.HasPrefix(tt.reply, "* OK") {
				if !c.Closed() {
					t.Fatal("session goes on after the refusal")
				}
				return
			}
			say(c, d.login...)
			reqs := a.requests()
			if len(reqs) != 1 || reqs[0].TLS == nil || reqs[0].TLS.Verify != tt.want {
				t.Fatalf("Authenticator saw %+v, want Verify %q", reqs, tt.want)
			}
			if tt.want == "SUCCESS" && reqs[0].TLS.Subject != auth.NewTLSInfo(tt.cert[0].Cert, "").Subject {
				t.Errorf("subject %q", reqs[0].TLS.Subject)
			}
		})
	}
}

// A session that ssl_verify_client refuses ends with the protocol's
// refusal and a close, whether TLS came first (listen … ssl) or by
// STARTTLS: in IMAP the refusal is a BYE, the server's word for closing.
func TestTLSClientCertificateRefusal(t *testing.T) {
	f := newTLSFixture(t)
	for _, lc := range []mailproxy.ListenConfig{{SSL: true}, {}} {
		name := map[bool]string{true: "implicit TLS", false: "STARTTLS"}[lc.SSL]
		t.Run(name, func(t *testing.T) {
			settings := &session.TLS{StartTLS: session.StartTLSOn, Verify: session.VerifyOn, ClientCAs: []*x509.Certificate{f.ca.Cert}}
			f.eachProtocol(t, nil, lc, settings, func(t *testing.T, d dialogue, c *testutil.Client, a *routeAuth) {
				if !lc.SSL {
					c.Line()
					say(c, d.hello...)
					say(c, d.startTLS)
					c.StartTLS(f.client) // no certificate
				}
				if got := c.Line(); got != d.noCert {
					t.Fatalf("got %q, want %q", got, d.noCert)
				}
				if !c.Closed() {
					t.Error("the session goes on after the refusal")
				}
			})
		})
	}
}

// Every TLS session tells the Authenticator its version and cipher suite in
// OpenSSL's names (nginx's Auth-SSL-Protocol and Auth-SSL-Cipher), whether
// client certificates are asked for or not.
func TestTLSAuthProtocolAndCipher(t *testing.T) {
	f, backends := newTLSFixture(t), startBackends(t)
	d := dialogues[0]
	tests := []struct {
		name             string
		verify           session.VerifyClient
		version          uint16
		suite            uint16 // for TLS 1.2
		protocol, cipher string
	}{
		{"TLS 1.3", session.VerifyOff, tls.VersionTLS13, 0, "TLSv1.3", ""},
		{"TLS 1.2", session.VerifyOff, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"},
		{"TLS 1.2, ssl_verify_client optional", session.VerifyOptional, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			"TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &routeAuth{backend: backends.imap.Addr}
			settings := &session.TLS{Verify: tt.verify, ClientCAs: []*x509.Certificate{f.ca.Cert}}
			cfg := f.client.Clone()
			cfg.MinVersion, cfg.MaxVersion = tt.version, tt.version
			if tt.suite != 0 {
				cfg.CipherSuites = []uint16{tt.suite}
			}
			c := testutil.DialTLS(t, f.serve(t, d, a, mailproxy.ListenConfig{SSL: true}, settings), cfg)
			state := c.Conn.(*tls.Conn).ConnectionState()
			c.Line()
			say(c, d.login...)
			reqs := a.requests()
			if len(reqs) != 1 || reqs[0].TLS == nil {
				t.Fatalf("Authenticator saw %+v", reqs)
			}
			want := tt.cipher
			if want == "" {
				want = tls.CipherSuiteName(state.CipherSuite) // TLS 1.3: OpenSSL's name is the standard one
			}
			if got := reqs[0].TLS; got.Protocol != tt.protocol || got.Cipher != want {
				t.Errorf("Protocol %q, Cipher %q; want %q, %q", got.Protocol, got.Cipher, tt.protocol, want)
			}
		})
	}
}

// revocationList makes a CRL of ca revoking certs.
func revocationList(t *testing.T, ca *testutil.Cert, certs ...*testutil.Cert) *x509.RevocationList {
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour)}
	for _, c := range certs {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.Cert.SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// SASL EXTERNAL, when configured, is offered with and without TLS, as
// nginx offers it: the Authenticator decides, seeing whether there is a
// TLS session and a verified certificate. Over TLS the certificate's facts
// go with the name the client gives.
func TestTLSExternal(t *testing.T) {
	f, backends := newTLSFixture(t), startBackends(t)
	client := f.ca.Issue(t, testutil.CertOptions{Client: true, Subject: pkix.Name{CommonName: "alice"}})
	a := &routeAuth{backend: backends.imap.Addr}
	srv := func(c session.Config) mailproxy.Server {
		return &imap.Server{Config: c, AuthMethods: []string{"plain", "external"}}
	}
	d := dialogues[0]
	d.server = srv
	settings := &session.TLS{StartTLS: session.StartTLSOn, Verify: session.VerifyOptional, ClientCAs: []*x509.Certificate{f.ca.Cert}}
	addr := f.serve(t, d, a, mailproxy.ListenConfig{}, settings)
	plain := testutil.Dial(t, "tcp", addr)
	if greeting := plain.Line(); !strings.Contains(greeting, "AUTH=EXTERNAL") {
		t.Errorf("EXTERNAL not offered before TLS: %q", greeting)
	}
	plain.Exchange("a AUTHENTICATE EXTERNAL\r\n", "+ ")
	plain.Exchange(testutil.B64("alice")+"\r\n", "a OK")
	if req := a.requests()[0]; req.Method != auth.MethodExternal || req.User != "alice" || req.Password != "" || req.TLS != nil {
		t.Fatalf("EXTERNAL without TLS: request %+v", req)
	}

	c := testutil.Dial(t, "tcp", addr)
	c.Line()
	say(c, d.startTLS)
	cfg := f.client.Clone()
	cfg.Certificates = []tls.Certificate{client.TLS()}
	c.StartTLS(cfg)
	if caps := c.Cmd("c CAPABILITY", "c OK")[0]; !strings.Contains(caps, "AUTH=EXTERNAL") {
		t.Errorf("EXTERNAL not offered over TLS: %q", caps)
	}
	if got := say(c, exchange{"a AUTHENTICATE EXTERNAL YWxpY2U=", "a "}); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("AUTHENTICATE EXTERNAL: %q", got)
	}
	req := a.requests()[1]
	if req.Method != auth.MethodExternal || req.User != "alice" || req.TLS.Verify != "SUCCESS" || req.TLS.Subject != "CN=alice" {
		t.Fatalf("request %+v, TLS %+v", req, req.TLS)
	}
}

// A reload with a new certificate serves new sessions with it, while a
// session of the old one goes on undisturbed.
func TestTLSReloadCertificate(t *testing.T) {
	f := newTLSFixture(t)
	next := f.ca.Issue(t, testutil.CertOptions{})
	addr := testutil.FreeAddr(t)
	config := func(cert tls.Certificate) *mailproxy.Config {
		settings := &session.TLS{Config: &tls.Config{Certificates: []tls.Certificate{cert}}}
		return &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
			Name: "imap", Listen: []mailproxy.ListenConfig{{Address: addr, SSL: true}},
			Server: dialogues[0].server(session.Config{Logger: testutil.Discard, TLS: settings}),
		}}}
	}
	p := start(t, config(f.server))
	old := testutil.DialTLS(t, addr, f.client)
	old.Line()
	if err := p.Reload(t.Context(), config(next.TLS())); err != nil {
		t.Fatal(err)
	}
	c := testutil.Dial(t, "tcp", addr)
	state := c.StartTLS(f.client)
	if got := state.PeerCertificates[0].SerialNumber; got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Errorf("new session got serial %x, want the new certificate's %x", got, next.Cert.SerialNumber)
	}
	if got := old.Cmd("c CAPABILITY", "c OK"); len(got) != 2 {
		t.Errorf("old session after reload: %q", got)
	}
}

// The handshake is bounded by the server's timeout: a client that opens
// an implicit TLS connection and says nothing is dropped.
func TestTLSHandshakeTimeout(t *testing.T) {
	f := newTLSFixture(t)
	var logs testutil.Buffer
	settings := &session.TLS{Config: &tls.Config{Certificates: []tls.Certificate{f.server}}}
	p := start(t, &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name: "imap", Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0", SSL: true}},
		Server: dialogues[0].server(session.Config{Timeout: 100 * time.Millisecond, TLS: settings,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))}),
	}}})
	c := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
	start := time.Now()
	if !c.Closed() {
		t.Fatal("connection still open")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v", d)
	}
	testutil.WaitFor(t, "the log line", func() bool {
		return strings.Contains(logs.String(), `level=INFO msg="client timed out"`) && strings.Contains(logs.String(), `action="SSL handshaking"`)
	})
}

// PROXY protocol and implicit TLS on one listener: the header comes
// first, then the handshake, and the client address is the header's.
func TestTLSBehindProxyProtocol(t *testing.T) {
	f, backends := newTLSFixture(t), startBackends(t)
	a := &routeAuth{backend: backends.imap.Addr}
	settings := &session.TLS{Config: &tls.Config{Certificates: []tls.Certificate{f.server}}}
	p := start(t, &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name: "imap", Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0", SSL: true, ProxyProtocol: true}},
		Server: dialogues[0].server(session.Config{Auth: a, Logger: testutil.Discard, TLS: settings, RealIP: loopback}),
	}}})
	c := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
	if _, err := c.Conn.Write(header(2, proxyproto.PROXY)); err != nil {
		t.Fatal(err)
	}
	c.StartTLS(f.client)
	c.Line()
	if got := say(c, dialogues[0].login...); !loggedIn(got) {
		t.Fatalf("login: %q", got)
	}
	req := a.requests()[0]
	if req.ClientAddr.String() != "192.0.2.7:5555" || req.TLS == nil {
		t.Fatalf("client %v, TLS %v", req.ClientAddr, req.TLS)
	}
}
