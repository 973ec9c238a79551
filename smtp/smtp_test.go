package smtp_test

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

const (
	user     = "alice"
	password = "secret"
)

// serve runs srv, logging nothing unless it has a Logger and named
// proxy.test unless it has a ServerName, and returns its address.
func serve(t *testing.T, srv *smtp.Server) string {
	t.Helper()
	srv.Config.Logger = cmp.Or(srv.Config.Logger, testutil.Discard)
	srv.Config.ServerName = cmp.Or(srv.Config.ServerName, "proxy.test")
	return testutil.Serve(t, srv)
}

func startBackend(t *testing.T) *mailtest.SMTPServer {
	t.Helper()
	be, err := mailtest.StartSMTP(mailtest.SMTPOptions{Users: []mailtest.User{{Name: user, Password: password}}, Domain: "backend.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func table(backend string) auth.Authenticator {
	return auth.Static{user: {Password: password, Backend: backend}}
}

// submit sends msg on c as a mail client does: EHLO helo, AUTH PLAIN as
// alice, one mail from alice@example.test to bob@example.test, QUIT.
func submit(t *testing.T, c *gosmtp.Client, helo, msg string) {
	t.Helper()
	if err := c.Hello(helo); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		t.Fatalf("auth: %v", err)
	}
	if err := c.SendMail("alice@example.test", []string{"bob@example.test"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Quit()
}

// A real SMTP client submits through the proxy; the backend receives the
// message byte for byte, with the proxy's AUTH when proxy_smtp_auth is on.
func TestSubmission(t *testing.T) {
	for _, backendAuth := range []bool{false, true} {
		t.Run(map[bool]string{false: "xclient", true: "proxy_smtp_auth"}[backendAuth], func(t *testing.T) {
			be := startBackend(t)
			addr := serve(t, &smtp.Server{BackendAuth: backendAuth, Config: session.Config{Auth: table(be.Addr)}})
			c, err := gosmtp.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := "Subject: through\r\n\r\nline\r\n.leading dot\r\n"
			submit(t, c, "client.test", msg)
			got := be.Messages()
			if len(got) != 1 || string(got[0].Data) != msg || got[0].From != "alice@example.test" {
				t.Fatalf("backend got %+v", got)
			}
			if wantUser := map[bool]string{false: "", true: user}[backendAuth]; got[0].AuthUser != wantUser {
				t.Errorf("backend AUTH user %q, want %q", got[0].AuthUser, wantUser)
			}
		})
	}
}

// startFake starts a scripted SMTP backend, with XCLIENT when xclient is
// set, that accepts every command but a RCPT to nobody@.
func startFake(t *testing.T, xclient bool) *testutil.FakeBackend {
	t.Helper()
	return testutil.StartFake(t, testutil.Script{Greeting: "220 fake.test ESMTP", Answer: func(c *testutil.FakeConn, line string) {
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO" && xclient:
			c.Reply("250-fake.test", "250-XCLIENT ADDR NAME LOGIN HELO", "250 AUTH PLAIN")
		case verb == "EHLO":
			c.Reply("250-fake.test", "250 AUTH PLAIN")
		case verb == "XCLIENT":
			c.Reply("220 fake.test ESMTP again")
		case verb == "AUTH":
			c.Reply("235 2.7.0 Authentication successful")
		case verb == "RCPT" && strings.Contains(line, "nobody@"):
			c.Reply("550 5.1.1 No such user")
		case verb == "DATA":
			c.Reply("354 go ahead")
			for l, err := c.ReadLine(); l != "." && err == nil; l, err = c.ReadLine() {
			}
			c.Reply("250 2.0.0 queued")
		case verb == "QUIT":
			c.Reply("221 bye")
			c.Close()
		default:
			c.Reply("250 2.0.0 OK")
		}
	}})
}

// XCLIENT carries the client's address, login, name and HELO, then the
// client's EHLO is given again. With proxy_smtp_auth the login goes in
// AUTH instead: a backend that took XCLIENT LOGIN refuses AUTH.
func TestXCLIENT(t *testing.T) {
	for _, tt := range []struct {
		name        string
		backendAuth bool
		want        []string
	}{
		{"xclient", false, []string{"EHLO proxy.test", "XCLIENT ADDR=127.0.0.1 LOGIN=alice NAME=[UNAVAILABLE] HELO=client.test", "EHLO client.test",
			"MAIL FROM:<a@b.test>", "QUIT"}},
		{"proxy_smtp_auth", true, []string{"EHLO proxy.test", "XCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE] HELO=client.test", "EHLO client.test",
			"AUTH PLAIN " + testutil.B64("\x00alice\x00secret"), "MAIL FROM:<a@b.test>", "QUIT"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, true)
			addr := serve(t, &smtp.Server{BackendAuth: tt.backendAuth, Config: session.Config{Auth: table(fake.Addr)}})
			c := testutil.Dial(t, "tcp", addr)
			c.Play([]testutil.Step{
				{"", "220 proxy.test ESMTP ready"},
				{"EHLO client.test\r\n", "250-proxy.test", "250 AUTH PLAIN LOGIN"},
				{"AUTH PLAIN " + testutil.B64("\x00alice\x00secret") + "\r\n", "235 2.0.0 OK"},
				{"MAIL FROM:<a@b.test>\r\n", "250 2.0.0 OK"},
				{"QUIT\r\n", "221"},
			})
			if got := fake.Received(); strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("backend got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestXCLIENTOffAndUnsupported(t *testing.T) {
	for _, tt := range []struct {
		name    string
		xclient bool // the backend has it
		disable bool // xclient off
		want    []string
	}{
		{"xclient off", true, true, []string{"HELO client.test", "MAIL FROM:<a@b.test>"}},
		{"backend without XCLIENT", false, false, []string{"EHLO proxy.test", "MAIL FROM:<a@b.test>"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, tt.xclient)
			addr := serve(t, &smtp.Server{DisableXClient: tt.disable, Config: session.Config{Auth: table(fake.Addr)}})
			testutil.Dial(t, "tcp", addr).Play([]testutil.Step{
				{"", "220"},
				{"HELO client.test\r\n", "250 proxy.test"},
				{"AUTH PLAIN " + testutil.B64("\x00alice\x00secret") + "\r\n", "235"},
				{"MAIL FROM:<a@b.test>\r\n", "250"},
			})
			testutil.WaitFor(t, "the MAIL command", func() bool { return len(fake.Received()) >= 2 })
			if got := fake.Received(); strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("backend got %q, want %q", got, tt.want)
			}
		})
	}
}

// What the backend is told, for a client that said HELO or nothing before
// AUTH or, with smtp_auth none, MAIL: without a HELO of the client's the
// proxy introduces the session with its own name, and XCLIENT has no
// HELO=. After XCLIENT only a client's HELO is repeated, and an EHLO of
// the proxy's comes before proxy_smtp_auth's AUTH.
func TestBackendHello(t *testing.T) {
	plain := "AUTH PLAIN " + testutil.B64("\x00alice\x00secret")
	login := []testutil.Step{
		{plain + "\r\n", "235 2.0.0 OK"},
		{"MAIL FROM:<a@b.test>\r\n", "250 2.0.0 OK"}, // the backend's
	}
	envelope := []testutil.Step{
		{"MAIL FROM:<a@b.test>\r\n", "250 2.1.0 OK"},
		{"RCPT TO:<bob@b.test>\r\n", "250 2.0.0 OK"}, // the backend's
	}
	helo := testutil.Step{"HELO client.test\r\n", "250 proxy.test"}
	xclient := "XCLIENT ADDR=127.0.0.1 LOGIN=alice NAME=[UNAVAILABLE]"
	xclientNoLogin := "XCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]"
	tests := []struct {
		name        string
		none        bool // smtp_auth none
		disable     bool // xclient off
		backendAuth bool // proxy_smtp_auth
		steps       []testutil.Step
		want        []string
	}{
		{"AUTH without HELO, xclient", false, false, false, login,
			[]string{"EHLO proxy.test", xclient, "MAIL FROM:<a@b.test>"}},
		{"AUTH without HELO, xclient off", false, true, false, login,
			[]string{"HELO proxy.test", "MAIL FROM:<a@b.test>"}},
		{"AUTH without HELO, proxy_smtp_auth", false, false, true, login,
			[]string{"EHLO proxy.test", xclientNoLogin, "EHLO proxy.test", plain, "MAIL FROM:<a@b.test>"}},
		{"AUTH without HELO, proxy_smtp_auth, xclient off", false, true, true, login,
			[]string{"EHLO proxy.test", plain, "MAIL FROM:<a@b.test>"}},

		{"MAIL without HELO, xclient", true, false, false, envelope,
			[]string{"EHLO proxy.test", xclientNoLogin, "MAIL FROM:<a@b.test>", "RCPT TO:<bob@b.test>"}},
		{"MAIL without HELO, xclient off", true, true, false, envelope,
			[]string{"HELO proxy.test", "MAIL FROM:<a@b.test>", "RCPT TO:<bob@b.test>"}},
		{"MAIL without HELO, proxy_smtp_auth", true, false, true, envelope,
			[]string{"EHLO proxy.test", xclientNoLogin, "MAIL FROM:<a@b.test>", "RCPT TO:<bob@b.test>"}},
		{"MAIL without HELO, proxy_smtp_auth, xclient off", true, true, true, envelope,
			[]string{"HELO proxy.test", "MAIL FROM:<a@b.test>", "RCPT TO:<bob@b.test>"}},

		{"HELO then AUTH, xclient", false, false, false, append([]testutil.Step{helo}, login...),
			[]string{"EHLO proxy.test", xclient + " HELO=client.test", "HELO client.test", "MAIL FROM:<a@b.test>"}},
		{"HELO then AUTH, xclient off", false, true, false, append([]testutil.Step{helo}, login...),
			[]string{"HELO client.test", "MAIL FROM:<a@b.test>"}},
		{"HELO then AUTH, proxy_smtp_auth", false, false, true, append([]testutil.Step{helo}, login...),
			[]string{"EHLO proxy.test", xclientNoLogin + " HELO=client.test", "EHLO client.test", plain, "MAIL FROM:<a@b.test>"}},
		{"HELO then AUTH, proxy_smtp_auth, xclient off", false, true, true, append([]testutil.Step{helo}, login...),
			[]string{"EHLO client.test", plain, "MAIL FROM:<a@b.test>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, true)
			var methods []string
			if tt.none {
				methods = []string{"none"}
			}
			var mu sync.Mutex
			var helos []string
			a := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) (*auth.Result, error) {
				mu.Lock()
				helos = append(helos, req.SMTPHelo)
				mu.Unlock()
				if tt.none {
					return &auth.Result{Backend: fake.Addr}, nil
				}
				return table(fake.Addr).Authenticate(ctx, req)
			})
			addr := serve(t, &smtp.Server{AuthMethods: methods, DisableXClient: tt.disable, BackendAuth: tt.backendAuth, Config: session.Config{Auth: a}})
			testutil.Dial(t, "tcp", addr).Play(append([]testutil.Step{{"", "220 proxy.test ESMTP ready"}}, tt.steps...))
			if got := fake.Received(); strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("backend got\n%q\nwant\n%q", got, tt.want)
			}
			wantHelo := ""
			if tt.steps[0][0] == helo[0] {
				wantHelo = "client.test"
			}
			mu.Lock()
			defer mu.Unlock()
			if len(helos) != 1 || helos[0] != wantHelo {
				t.Errorf("the Authenticator got HELO %q, want %q", helos, wantHelo)
			}
		})
	}
}

// serveAuthNone serves smtp_auth none through an auth_http service that
// sends every session to backend, giving heard the headers of each of its
// requests. It returns the server's address.
func serveAuthNone(t *testing.T, backend string, heard func(http.Header)) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(backend)
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		heard(r.Header)
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", host)
		w.Header().Set("Auth-Port", port)
	}))
	t.Cleanup(svc.Close)
	h := &auth.HTTP{URL: svc.URL + "/auth", Logger: testutil.Discard}
	t.Cleanup(func() { h.Close() })
	return serve(t, &smtp.Server{AuthMethods: []string{"none"}, Config: session.Config{Auth: h}})
}

// An auth_http service hears of a client that gave no HELO as nginx tells
// it: Auth-SMTP-Helo is there, and empty.
func TestAuthHTTPWithoutHelo(t *testing.T) {
	helos := make(chan []string, 1)
	addr := serveAuthNone(t, startFake(t, true).Addr, func(h http.Header) { helos <- h.Values("Auth-SMTP-Helo") })
	testutil.Dial(t, "tcp", addr).Play([]testutil.Step{
		{"", "220"},
		{"MAIL FROM:<a@b.test>\r\n", "250 2.1.0 OK"},
		{"RCPT TO:<bob@b.test>\r\n", "250 2.0.0 OK"},
	})
	if got := <-helos; len(got) != 1 || got[0] != "" {
		t.Errorf("Auth-SMTP-Helo %q, want one empty header", got)
	}
}

// smtp_auth none: MAIL and the first RCPT go to the Authenticator with
// method none and are replayed; the backend answers the RCPT.
func TestAuthNone(t *testing.T) {
	fake := startFake(t, true)
	var mu sync.Mutex
	var reqs []auth.Request
	srv := &smtp.Server{AuthMethods: []string{"none"}, Config: session.Config{Auth: auth.AuthenticatorFunc(
		func(_ context.Context, req *auth.Request) (*auth.Result, error) {
			mu.Lock()
			reqs = append(reqs, *req)
			mu.Unlock()
			if strings.Contains(req.SMTPTo[0], "spam@") {
				return &auth.Result{Error: "Relay denied", SMTPCode: "554 5.7.1"}, nil
			}
			return &auth.Result{Backend: fake.Addr}, nil
		})}}
	addr := serve(t, srv)
	odd := "MAIL FROM:<we\"ird address@example.test> SIZE=100 BODY=8BITMIME " + strings.Repeat("X", 300)
	testutil.Dial(t, "tcp", addr).Play([]testutil.Step{
		{"", "220"},
		{"EHLO mx.client.test\r\n", "250 proxy.test"},
		{odd + "\r\n", "250 2.1.0 OK"},
		{"RCPT TO:<spam@x.test>\r\n", "554 5.7.1 Relay denied", "<closed>"},
	})
	testutil.Dial(t, "tcp", addr).Play([]testutil.Step{
		{"", "220"},
		{"EHLO mx.client.test\r\nMAIL FROM:<>\r\nRCPT TO:<nobody@x.test>\r\nRCPT TO:<bob@x.test>\r\nDATA\r\n",
			"250 proxy.test", "250 2.1.0 OK", "550 5.1.1 No such user", "250 2.0.0 OK", "354"},
		{"Subject: x\r\n\r\nbody\r\n.\r\n", "250 2.0.0 queued"},
	})
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) != 2 {
		t.Fatalf("%d auth requests", len(reqs))
	}
	first := reqs[0]
	if first.Method != auth.MethodNone || first.SMTPHelo != "mx.client.test" || first.SMTPFrom != odd || first.SMTPTo[0] != "RCPT TO:<spam@x.test>" || first.User != "" {
		t.Errorf("first request %+v", first)
	}
	if got := strings.Join(fake.Received(), "|"); !strings.Contains(got, "XCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE] HELO=mx.client.test|EHLO mx.client.test|MAIL FROM:<>|RCPT TO:<nobody@x.test>|RCPT TO:<bob@x.test>|DATA") {
		t.Errorf("backend got %q", got)
	}
}

func TestTranscripts(t *testing.T) {
	be := startBackend(t)
	deadAddr := testutil.FreeAddr(t) // nothing listens there
	startTLS := func(mode session.StartTLS) session.Config {
		return session.Config{TLS: &session.TLS{Config: testutil.ServerTLS(t), StartTLS: mode}}
	}
	tests := []struct {
		name  string
		srv   *smtp.Server
		steps []testutil.Step
	}{
		{"sequence and syntax errors", &smtp.Server{Config: session.Config{MaxErrors: 20}}, []testutil.Step{
			{"", "220 proxy.test ESMTP ready"},
			{"AUTH PLAIN\r\n", "334 "}, // no EHLO needed, as in nginx
			{"*\r\n", "501 5.7.0 Authentication cancelled"},
			{"EHLO\r\n", "501 5.5.4 Invalid argument"},
			{"MAIL FROM:<a@b>\r\n", "530 5.7.0 Authentication required"},
			{"RCPT TO:<a@b>\r\n", "530"},
			{"DATA\r\n", "502 5.5.1"},
			{"FOO\r\n", "500 5.5.1 Invalid command"},
			{"EHLO c.test\r\n", "250-proxy.test", "250 AUTH PLAIN LOGIN"},
			{"AUTH CRAM-MD5\r\n", "504 5.5.4"},
			{"AUTH PLAIN\r\n", "334 "},
			{"*\r\n", "501 5.7.0 Authentication cancelled"},
			{"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6"},
			{"@@@\r\n", "501 5.5.2 Cannot decode response"},
			{"NOOP\r\nRSET\r\n", "250 2.0.0 OK", "250 2.0.0 OK"},
			{strings.Repeat("x", 5000) + "\r\n", "500 5.5.6 Line too long", "<closed>"},
		}},
		{"EHLO: capabilities, AUTH, STARTTLS last", &smtp.Server{Capabilities: []string{"SIZE 1000", "8BITMIME"}, Config: startTLS(session.StartTLSOn)}, []testutil.Step{
			{"", "220"},
			{"EHLO c.test\r\n", "250-proxy.test", "250-SIZE 1000", "250-8BITMIME", "250-AUTH PLAIN LOGIN", "250 STARTTLS"},
		}},
		{"EHLO with starttls only: no AUTH before TLS", &smtp.Server{Capabilities: []string{"SIZE 1000"}, Config: startTLS(session.StartTLSOnly)}, []testutil.Step{
			{"", "220"},
			{"EHLO c.test\r\n", "250-proxy.test", "250-SIZE 1000", "250 STARTTLS"},
		}},
		{"max_errors", &smtp.Server{}, []testutil.Step{
			{"", "220"},
			{"A\r\nB\r\nC\r\nD\r\nE\r\n", "500", "500", "500", "500", "500", "421 4.7.0 Too many errors", "<closed>"},
		}},
		{"wrong password", &smtp.Server{Config: session.Config{Auth: table(be.Addr)}}, []testutil.Step{
			{"", "220"},
			{"EHLO c.test\r\nAUTH PLAIN " + testutil.B64("\x00alice\x00nope") + "\r\n", "250-", "250 ", "535 5.7.8 Invalid login or password", "<closed>"},
		}},
		{"AUTH LOGIN", &smtp.Server{Config: session.Config{Auth: table(be.Addr)}}, []testutil.Step{
			{"", "220"},
			{"EHLO c.test\r\nAUTH LOGIN " + testutil.B64("alice") + "\r\n", "250-", "250 ", "334 UGFzc3dvcmQ6"},
			{testutil.B64("secret") + "\r\n", "235 2.0.0 OK"},
		}},
		{"temporary failures", &smtp.Server{Config: session.Config{Auth: auth.Static{user: {Password: password, Backend: deadAddr}}}}, []testutil.Step{
			{"", "220"},
			{"EHLO c.test\r\nAUTH PLAIN " + testutil.B64("\x00alice\x00secret") + "\r\n", "250-", "250 ", "451 4.3.0 Backend unavailable"},
			{"NOOP\r\n", "250"},
		}},
		{"no authenticator", &smtp.Server{}, []testutil.Step{
			{"", "220"},
			{"EHLO c.test\r\nAUTH PLAIN " + testutil.B64("\x00alice\x00secret") + "\r\n", "250-", "250 ", "451 4.3.0 Temporary authentication failure"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.Dial(t, "tcp", serve(t, tt.srv)).Play(tt.steps)
		})
	}
}

// smtp_greeting_delay: a client that talks before the greeting is refused
// as nginx refuses it, whatever it sent (a command, the start of one,
// credentials, bytes): "503 5.5.0", the close, and "client was rejected
// before greeting" with the command's verb, never the rest of the line.
// It reaches no Authenticator. A client that waits is greeted after the
// delay; one that leaves before it is closed without a word.
func TestGreetingDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	logs := &testutil.Buffer{}
	var asked atomic.Int32
	a := auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
		asked.Add(1)
		return &auth.Result{Error: "no"}, nil
	})
	addr := serve(t, &smtp.Server{GreetingDelay: delay, Config: session.Config{Auth: a, Logger: slog.New(slog.NewTextHandler(logs, nil))}})
	creds := testutil.B64("\x00alice\x00" + password)
	for _, tt := range []struct{ name, early, verb string }{
		{"EHLO", "EHLO eager.test\r\n", "EHLO"},
		{"pipelined login", "EHLO eager.test\r\nAUTH PLAIN " + creds + "\r\n", "EHLO"},
		{"credentials first", "AUTH PLAIN " + creds + "\r\n", "AUTH"},
		{"half a command", "QU", "QU"},
		{"bytes", "\x00\x16\x03\x01", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			early := testutil.Dial(t, "tcp", addr)
			start := time.Now()
			early.Exchange(tt.early, "503 5.5.0 Improper use of SMTP command pipelining", "<closed>")
			if took := time.Since(start); took >= delay {
				t.Errorf("refused after %v, not before the greeting", took)
			}
			want := " command=" + cmp.Or(tt.verb, `""`) + "\n"
			if out := logs.String(); !strings.Contains(out, want) || strings.Contains(out, creds) {
				t.Errorf("the log says\n%s\nwant the rejection with%q and no credentials", out, want)
			}
		})
	}
	patient := testutil.Dial(t, "tcp", addr)
	start := time.Now()
	patient.Exchange("", "220 proxy.test")
	if took := time.Since(start); took < delay {
		t.Errorf("greeting after %v, before the delay", took)
	}
	leaving := testutil.Dial(t, "tcp", addr)
	leaving.Conn.(*net.TCPConn).CloseWrite()
	leaving.Exchange("", "<closed>")
	if n := asked.Load(); n != 0 {
		t.Errorf("the Authenticator was asked %d times", n)
	}
	if n := strings.Count(logs.String(), "rejected before greeting"); n != 5 {
		t.Errorf("%d rejections logged, want 5", n)
	}
}

// blockingResolver answers name once release is closed.
type blockingResolver struct {
	release chan struct{}
	name    string
}

func (r *blockingResolver) ClientHost(ctx context.Context, _ netip.Addr) string {
	select {
	case <-r.release:
		return r.name
	case <-ctx.Done():
		return "[TEMPUNAVAIL]"
	}
}

// The lookup runs alongside the dialogue: the greeting and EHLO do not
// wait for it, the login does.
func TestResolverRunsAlongside(t *testing.T) {
	r := &blockingResolver{release: make(chan struct{}), name: "client.example"}
	hosts := make(chan string, 1)
	a := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		hosts <- req.ClientHost
		return &auth.Result{Error: "recorded", Wait: time.Millisecond}, nil
	})
	c := testutil.Dial(t, "tcp", serve(t, &smtp.Server{Config: session.Config{Auth: a, Resolver: r}}))
	c.Exchange("", "220 ")
	c.Exchange("EHLO client.test\r\n", "…250 ")
	c.Send("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
	select {
	case h := <-hosts:
		t.Fatalf("login went on before the lookup ended, with %q", h)
	case <-time.After(50 * time.Millisecond):
	}
	close(r.release)
	if h := <-hosts; h != "client.example" {
		t.Fatalf("Client-Host %q", h)
	}
	c.Exchange("", "535 5.7.8 recorded")
}
