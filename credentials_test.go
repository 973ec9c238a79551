package mailproxy_test

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// credentialsPassword is a password no log line would hold by chance.
const credentialsPassword = "Pw-9f3Kq-only-in-the-login"

// Every protocol and login method, accepted, refused and with the auth
// service failing, at debug level: no log line of the proxy or of its
// auth_http client holds the password, in clear, in base64 or escaped,
// in slog's text, in nginx's lines or in JSON lines.
func TestCredentialsNeverLogged(t *testing.T) {
	b := startBackendsFor(t, []mailtest.User{{Name: "alice", Password: credentialsPassword}})
	backends := map[string]string{"imap": b.imap.Addr, "pop3": b.pop3.Addr, "smtp": b.smtp.Addr}
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := url.PathUnescape(r.Header.Get("Auth-User"))
		pass, _ := url.PathUnescape(r.Header.Get("Auth-Pass"))
		switch {
		case user == "broken":
			w.WriteHeader(http.StatusInternalServerError)
		case user == "alice" && pass == credentialsPassword:
			host, port, _ := strings.Cut(backends[r.Header.Get("Auth-Protocol")], ":")
			w.Header().Set("Auth-Status", "OK")
			w.Header().Set("Auth-Server", host)
			w.Header().Set("Auth-Port", port)
		default:
			w.Header().Set("Auth-Status", "Invalid login or password")
		}
	}))
	defer service.Close()

	var text, nginx, jsonLines testutil.Buffer
	log := slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(&text, &slog.HandlerOptions{Level: slog.LevelDebug}),
		errorlog.NewHandler(&nginx, &errorlog.HandlerOptions{Level: errorlog.LevelDebug}),
		errorlog.NewHandler(&jsonLines, &errorlog.HandlerOptions{Level: errorlog.LevelDebug, Format: errorlog.JSON}),
	))
	authn := &auth.HTTP{URL: service.URL + "/auth", Logger: log}
	cfg := session.Config{Auth: authn, Logger: log, ServerName: "proxy.test", MaxErrors: 50}
	servers := []mailproxy.Server{
		&imap.Server{Config: cfg, AuthMethods: []string{"plain", "login"}},
		&pop3.Server{Config: cfg},
		&smtp.Server{Config: cfg},
	}
	pc := &mailproxy.Config{}
	for i, srv := range servers {
		pc.Servers = append(pc.Servers, mailproxy.ServerConfig{Name: []string{"imap", "pop3", "smtp"}[i], Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}, Server: srv})
	}
	p := &mailproxy.Proxy{Config: pc, Logger: log}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	pw := credentialsPassword
	plain := func(user string) string { return testutil.B64("\x00" + user + "\x00" + pw) }
	sessions := []struct {
		name  string
		proto int
		steps []testutil.Step
	}{
		{"imap LOGIN", 0, []testutil.Step{{"", "* OK"}, {"a LOGIN alice " + pw + "\r\n", "a OK"}, {"b LOGOUT\r\n", "* BYE", "b OK"}}},
		{"imap LOGIN refused", 0, []testutil.Step{{"", "* OK"}, {"a LOGIN mallory " + pw + "\r\n", "a NO"}}},
		{"imap LOGIN, service down", 0, []testutil.Step{{"", "* OK"}, {"a LOGIN broken " + pw + "\r\n", "a NO [UNAVAILABLE]"}}},
		{"imap AUTHENTICATE PLAIN", 0, []testutil.Step{{"", "* OK"}, {"a AUTHENTICATE PLAIN " + plain("alice") + "\r\n", "a OK"}}},
		{"imap AUTHENTICATE PLAIN malformed", 0, []testutil.Step{{"", "* OK"}, {"a AUTHENTICATE PLAIN " + testutil.B64("alice "+pw) + "\r\n", "a NO"}}},
		{"imap AUTHENTICATE LOGIN refused", 0, []testutil.Step{{"", "* OK"}, {"a AUTHENTICATE LOGIN\r\n", "+ "}, {testutil.B64("mallory") + "\r\n", "+ "}, {testutil.B64(pw) + "\r\n", "a NO"}}},
		{"pop3 USER PASS", 1, []testutil.Step{{"", "+OK"}, {"USER alice\r\n", "+OK"}, {"PASS " + pw + "\r\n", "+OK"}, {"QUIT\r\n", "+OK"}}},
		{"pop3 PASS refused", 1, []testutil.Step{{"", "+OK"}, {"USER mallory\r\n", "+OK"}, {"PASS " + pw + "\r\n", "-ERR"}}},
		{"pop3 AUTH PLAIN, service down", 1, []testutil.Step{{"", "+OK"}, {"AUTH PLAIN " + plain("broken") + "\r\n", "-ERR [SYS/TEMP] Temporary"}}},
		{"smtp AUTH PLAIN", 2, []testutil.Step{{"", "220"}, {"EHLO c.test\r\n", "250-proxy.test", "250 AUTH PLAIN LOGIN"}, {"AUTH PLAIN " + plain("alice") + "\r\n", "235"}, {"QUIT\r\n", "221"}}},
		{"smtp AUTH LOGIN refused", 2, []testutil.Step{{"", "220"}, {"AUTH LOGIN " + testutil.B64("mallory") + "\r\n", "334 "}, {testutil.B64(pw) + "\r\n", "535"}}},
	}
	for _, s := range sessions {
		t.Run(s.name, func(t *testing.T) {
			testutil.Dial(t, "tcp", p.ServerAddrs(s.proto)[0].String()).Play(s.steps)
		})
	}
	p.Close()
	forms := []string{pw, base64.StdEncoding.EncodeToString([]byte(pw)), plain("alice"), plain("broken"), testutil.B64("alice " + pw), url.PathEscape(pw)}
	for name, logs := range map[string]*testutil.Buffer{"text": &text, "nginx": &nginx, "json": &jsonLines} {
		got := logs.String()
		if !strings.Contains(got, "client logged in") || !strings.Contains(got, "client login failed") || !strings.Contains(got, "auth http failed") || !strings.Contains(got, "invalid SASL response") {
			t.Fatalf("the %s logs lack the login lines this test looks through:\n%s", name, got)
		}
		for _, form := range forms {
			if strings.Contains(got, form) {
				t.Errorf("a %s log line holds the password as %q:\n%s", name, form, got)
			}
		}
	}
}
