//go:build unix

package mailproxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// peerProxy is the proxy in front of Dovecot and Postfix, each protocol on
// a plain listener with STARTTLS and on an implicit TLS one.
type peerProxy struct {
	plain, ssl map[string]string // protocol → address
	caFile     string
	certFile   string // a client certificate of the CA, and its key
	keyFile    string
	user, pass string
	auth       *peerAuth
	postfix    *testutil.Postfix
}

// peerAuth accepts the Dovecot user and routes by protocol.
type peerAuth struct {
	routeAuth
	backends map[string]string
	user     string
}

func (a *peerAuth) Authenticate(ctx context.Context, req *auth.Request) (*auth.Result, error) {
	res, err := a.routeAuth.Authenticate(ctx, req)
	if res != nil && res.OK() {
		res.Backend, res.User = a.backends[req.Protocol], a.user
		res.Password = req.Password
	}
	return res, err
}

func startPeerProxy(t *testing.T) *peerProxy {
	d, p := testutil.StartDovecot(t), testutil.StartPostfix(t)
	f := newTLSFixture(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, f.ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := f.ca.Issue(t, testutil.CertOptions{Client: true}).WriteFiles(t, dir, "client")
	a := &peerAuth{backends: map[string]string{"imap": d.IMAPAddr, "pop3": d.POP3Addr, "smtp": p.Addr}, user: d.User}
	a.routeAuth.check = func(user, pass string) bool { return user == d.User && pass == d.Password }
	pp := &peerProxy{plain: map[string]string{}, ssl: map[string]string{}, caFile: caFile, certFile: certFile, keyFile: keyFile,
		user: d.User, pass: d.Password, auth: a, postfix: p}
	cfg := &mailproxy.Config{}
	for _, dl := range dialogues {
		settings := &session.TLS{
			Config:    &tls.Config{Certificates: []tls.Certificate{f.server}},
			StartTLS:  session.StartTLSOn,
			Verify:    session.VerifyOptional,
			ClientCAs: []*x509.Certificate{f.ca.Cert},
		}
		cfg.Servers = append(cfg.Servers, mailproxy.ServerConfig{
			Name:   dl.name,
			Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}, {Address: "127.0.0.1:0", SSL: true}},
			Server: dl.server(session.Config{ServerName: "proxy.test", Auth: a, Logger: testutil.Discard, TLS: settings}),
		})
	}
	proxy := start(t, cfg)
	for i, dl := range dialogues {
		addrs := proxy.ServerAddrs(i)
		pp.plain[dl.name], pp.ssl[dl.name] = addrs[0].String(), addrs[1].String()
	}
	return pp
}

// run runs a client program with stdin and returns its output, failing
// the test when it does not exit within 20 seconds or fails.
func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := runExit(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// runExit runs a client program as run does, returning its output and
// how it exited (an *exec.ExitError when it failed).
func runExit(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.LookPath(t, name), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), ctx.Err(), out)
	}
	return string(out), err
}

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// openssl s_client, with STARTTLS and implicit TLS, through the proxy to
// Dovecot and Postfix; commands pipelined after the login reach the
// backend.
func TestTLSOpenSSLClient(t *testing.T) {
	pp := startPeerProxy(t)
	imapScript := "a LOGIN " + pp.user + " " + pp.pass + "\nb SELECT INBOX\nc LOGOUT\n"
	pop3Script := "USER " + pp.user + "\nPASS " + pp.pass + "\nSTAT\nQUIT\n"
	smtpScript := "EHLO client.test\nAUTH PLAIN " + plainAuth(pp.user, pp.pass) +
		"\nMAIL FROM:<a@example.test>\nRCPT TO:<bob@example.test>\nDATA\nSubject: s_client\n\nhello\n.\nQUIT\n"
	tests := []struct {
		name   string
		addr   string
		args   []string
		script string
		want   []string
	}{
		{"imap starttls", pp.plain["imap"], []string{"-starttls", "imap"}, imapScript, []string{"a OK", "b OK [READ-WRITE]", "c OK"}},
		{"imaps", pp.ssl["imap"], nil, imapScript, []string{"* OK [CAPABILITY", "a OK", "b OK [READ-WRITE]"}},
		{"pop3 stls", pp.plain["pop3"], []string{"-starttls", "pop3"}, pop3Script, []string{"+OK 0 0"}},
		{"pop3s", pp.ssl["pop3"], nil, pop3Script, []string{"+OK POP3 ready", "+OK 0 0"}},
		{"smtp starttls", pp.plain["smtp"], []string{"-starttls", "smtp"}, smtpScript, []string{"235 ", "250 2.0.0 Ok: queued"}},
		{"smtps", pp.ssl["smtp"], nil, smtpScript, []string{"220 proxy.test", "235 ", "250 2.0.0 Ok: queued"}},
		{"TLS 1.2 with a chosen cipher", pp.ssl["imap"], []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, imapScript,
			[]string{"Cipher is ECDHE-ECDSA-AES128-GCM-SHA256", "a OK"}},
		{"client certificate", pp.ssl["imap"], []string{"-cert", pp.certFile, "-key", pp.keyFile}, imapScript, []string{"a OK"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"s_client", "-connect", tt.addr, "-CAfile", pp.caFile, "-verify_return_error", "-crlf", "-ign_eof"}, tt.args...)
			out := run(t, tt.script, "openssl", args...)
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("no %q in\n%s", want, out)
				}
			}
		})
	}
	var verified bool
	for _, r := range pp.auth.requests() {
		verified = verified || r.TLS != nil && r.TLS.Verify == "SUCCESS"
	}
	if !verified {
		t.Error("the client certificate did not reach the Authenticator as SUCCESS")
	}
}

// curl (--ssl-reqd on the plain ports makes it use STARTTLS) and swaks.
func TestTLSCurlAndSwaks(t *testing.T) {
	pp := startPeerProxy(t)
	curl := testutil.LookPath(t, "curl")
	creds := []string{"-u", pp.user + ":" + pp.pass, "--cacert", pp.caFile}
	mail := append([]string{"--mail-from", "a@example.test", "--mail-rcpt", "bob@example.test", "-T", "-"}, creds...)
	tests := []struct {
		name, url string
		args      []string
		trace     string // in curl's trace
	}{
		{"imap starttls", "imap://" + pp.plain["imap"] + "/INBOX", append([]string{"--ssl-reqd"}, creds...), "STARTTLS"},
		{"imaps", "imaps://" + pp.ssl["imap"] + "/INBOX", creds, "SSL connection using"},
		{"pop3 stls", "pop3://" + pp.plain["pop3"] + "/", append([]string{"--ssl-reqd"}, creds...), "STLS"},
		{"pop3s", "pop3s://" + pp.ssl["pop3"] + "/", creds, "SSL connection using"},
		{"smtp starttls", "smtp://" + pp.plain["smtp"], append([]string{"--ssl-reqd"}, mail...), "STARTTLS"},
		{"smtps", "smtps://" + pp.ssl["smtp"], mail, "SSL connection using"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, trace := testutil.Curl(t, curl, 0, tt.url, tt.args...)
			if !strings.Contains(trace, tt.trace) {
				t.Errorf("no %q in curl's trace\n%s", tt.trace, trace)
			}
		})
	}
	for _, flag := range []string{"--tls", "--tlsc"} {
		t.Run("swaks "+flag, func(t *testing.T) {
			addr := pp.plain["smtp"]
			if flag == "--tlsc" {
				addr = pp.ssl["smtp"]
			}
			out := run(t, "", "swaks", "--server", addr, flag, "--tls-verify", "--tls-ca-path", pp.caFile,
				"--auth", "PLAIN", "--auth-user", pp.user, "--auth-password", pp.pass,
				"--from", "a@example.test", "--to", "bob@example.test", "--header", "Subject: swaks "+flag)
			if !strings.Contains(out, "250 2.0.0 Ok: queued") {
				t.Errorf("not queued:\n%s", out)
			}
		})
	}
}

// openssl s_client -alpn, with implicit TLS and STARTTLS: the protocol's
// own name is selected, and another (http/1.1) is refused in the handshake
// with the no_application_protocol alert, as nginx does.
func TestTLSALPNOpenSSLClient(t *testing.T) {
	f := newTLSFixture(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, f.ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	quit := map[string]exchange{"imap": {"q LOGOUT\n", "q OK"}, "pop3": {"QUIT\n", "+OK"}, "smtp": {"QUIT\n", "221 "}}
	for _, d := range dialogues {
		for _, implicit := range []bool{true, false} {
			lc, mode, starttls := mailproxy.ListenConfig{SSL: true}, "implicit", []string(nil)
			if !implicit {
				lc, mode, starttls = mailproxy.ListenConfig{}, "starttls", []string{"-starttls", d.name}
			}
			addr := f.serve(t, d, &routeAuth{}, lc, &session.TLS{StartTLS: session.StartTLSOn})
			sClient := func(alpn string) (string, error) {
				args := append([]string{"s_client", "-connect", addr, "-CAfile", caFile, "-verify_return_error", "-crlf", "-ign_eof", "-alpn", alpn}, starttls...)
				return runExit(t, quit[d.name].send, "openssl", args...)
			}
			t.Run(mode+"/"+d.name+"/-alpn "+d.name, func(t *testing.T) {
				out, err := sClient(d.name)
				if err != nil || !strings.Contains(out, "ALPN protocol: "+d.name) || !strings.Contains(out, "\n"+quit[d.name].until) {
					t.Errorf("exit %v, no %q or %q in\n%s", err, "ALPN protocol: "+d.name, quit[d.name].until, out)
				}
			})
			t.Run(mode+"/"+d.name+"/-alpn http/1.1", func(t *testing.T) {
				out, err := sClient("http/1.1")
				if err == nil || !strings.Contains(out, "alert no application protocol") || strings.Contains(out, "ALPN protocol:") {
					t.Errorf("exit %v, want the no_application_protocol alert in\n%s", err, out)
				}
			})
		}
	}
}

// Auth-SSL-Protocol and Auth-SSL-Cipher reach an auth_http service as
// OpenSSL names them: the same words openssl s_client prints for the
// connection, with TLS 1.3 and 1.2, implicit TLS and STARTTLS, and no
// client certificates asked for.
func TestTLSAuthHTTPProtocolAndCipher(t *testing.T) {
	f := newTLSFixture(t)
	f.server = f.ca.Issue(t, testutil.CertOptions{Key: testutil.RSA}).TLS()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, f.ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []http.Header
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Auth-Status", "Invalid login or password")
		w.Header().Set("Auth-Wait", "0")
	}))
	t.Cleanup(service.Close)
	a := &auth.HTTP{URL: service.URL + "/auth", Logger: testutil.Discard}
	d := dialogues[0]
	tls13 := []string{"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"}
	tests := []struct {
		name             string
		lc               mailproxy.ListenConfig
		args             []string
		protocol, cipher string
	}{
		{"imaps, TLS 1.3", mailproxy.ListenConfig{SSL: true}, tls13, "TLSv1.3", "TLS_AES_256_GCM_SHA384"},
		{"imaps, TLS 1.2", mailproxy.ListenConfig{SSL: true}, []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"}, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"},
		{"starttls, TLS 1.2", mailproxy.ListenConfig{}, []string{"-starttls", "imap", "-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"}, "TLSv1.2", "ECDHE-RSA-CHACHA20-POLY1305"},
		{"starttls, TLS 1.3", mailproxy.ListenConfig{}, append([]string{"-starttls", "imap"}, tls13...), "TLSv1.3", "TLS_AES_256_GCM_SHA384"},
	}
	reported := regexp.MustCompile(`New, (TLSv1\.[23]), Cipher is (\S+)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			addr := f.serve(t, d, a, tt.lc, &session.TLS{StartTLS: session.StartTLSOn})
			args := append([]string{"s_client", "-connect", addr, "-CAfile", caFile, "-verify_return_error", "-crlf", "-ign_eof"}, tt.args...)
			out := run(t, "a LOGIN alice secret\nb LOGOUT\n", "openssl", args...)
			m := reported.FindStringSubmatch(out)
			if m == nil || !strings.Contains(out, "a NO") {
				t.Fatalf("no handshake or refused login in\n%s", out)
			}
			if m[1] != tt.protocol || m[2] != tt.cipher {
				t.Fatalf("s_client reports %s %s, want %s %s", m[1], m[2], tt.protocol, tt.cipher)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("%d auth requests", len(got))
			}
			h := got[0]
			if h.Get("Auth-SSL") != "on" || h.Get("Auth-SSL-Protocol") != m[1] || h.Get("Auth-SSL-Cipher") != m[2] {
				t.Errorf("Auth-SSL %q, Auth-SSL-Protocol %q, Auth-SSL-Cipher %q; s_client reports %s %s",
					h.Get("Auth-SSL"), h.Get("Auth-SSL-Protocol"), h.Get("Auth-SSL-Cipher"), m[1], m[2])
			}
			if v := h.Values("Auth-SSL-Verify"); v != nil {
				t.Errorf("Auth-SSL-Verify %q without ssl_verify_client", v)
			}
		})
	}
}
