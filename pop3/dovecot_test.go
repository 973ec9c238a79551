//go:build unix

package pop3_test

import (
	"context"
	"crypto/md5"
	"fmt"
	"strings"
	"testing"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
)

// Integration tests of the proxy in front of a real Dovecot. Each test
// starts its own instance (testutil.StartDovecot skips the test when
// Dovecot is not installed): a failed login makes Dovecot delay later
// logins from the same address, so no instance outlives a failure.

// dovecotMessage has CR LF line ends, so what Dovecot stores and returns
// is the message itself. Three lines start with a dot, one of them a lone
// dot, so that RETR must dot-stuff them.
const dovecotMessage = "From: a@example.org\r\nTo: testuser@example.org\r\nSubject: through the proxy\r\n\r\n" +
	"Hello, Dovecot, through mailproxy.\r\n.a line that starts with a dot\r\n..and one with two\r\n.\r\nend\r\n"

// dovecotProxy serves srv in front of d and returns its address; a nil
// Auth becomes a table that sends d's user, with d's password, to d.
func dovecotProxy(t *testing.T, d *testutil.Dovecot, srv *pop3.Server) string {
	t.Helper()
	if srv.Config.Auth == nil {
		srv.Config.Auth = auth.Static{d.User: {Password: d.Password, Backend: d.POP3Addr}}
	}
	return serve(t, srv)
}

// apopAuth is an Authenticator that accepts d's user by APOP only: it
// checks the digest against the salt the proxy passes (the challenge of
// its greeting) and d's password, and gives that password for the
// backend login, which the proxy makes with USER and PASS.
func apopAuth(d *testutil.Dovecot) auth.Authenticator {
	return auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		want := fmt.Sprintf("%x", md5.Sum([]byte(req.Salt+d.Password)))
		switch {
		case req.Method != auth.MethodAPOP:
			return &auth.Result{Error: "APOP only"}, nil
		case req.User != d.User || req.Password != want || !strings.HasPrefix(req.Salt, "<"):
			return &auth.Result{Error: "bad digest"}, nil
		}
		return &auth.Result{Backend: d.POP3Addr, Password: d.Password}, nil
	})
}

// retr sends RETR n and returns the message with the dot-stuffing undone,
// line ends as they came. It checks that the +OK line gives the size.
func retr(t *testing.T, c *testutil.Client, n, size int) string {
	t.Helper()
	c.Send("RETR %d", n)
	if got, want := c.Line(), fmt.Sprintf("+OK %d octets", size); got != want {
		t.Fatalf("RETR %d: got %q, want %q", n, got, want)
	}
	var b strings.Builder
	for {
		line, err := c.R.ReadString('\n')
		if err != nil {
			t.Fatalf("RETR %d: %v after %q", n, err, b.String())
		}
		if line == ".\r\n" {
			return b.String()
		}
		b.WriteString(strings.TrimPrefix(line, "."))
	}
}

// A client logs in through the proxy to Dovecot by USER/PASS, AUTH PLAIN
// with an initial response, and APOP (which the Authenticator checks; the
// proxy then logs in to Dovecot with USER/PASS), and works on the relayed
// session: STAT, RETR of a delivered message byte for byte, QUIT.
func TestDovecotRelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		srv  func(d *testutil.Dovecot) *pop3.Server
		// login logs in after the greeting, which it is given.
		login func(t *testing.T, c *testutil.Client, d *testutil.Dovecot, greeting string)
	}{
		{"USER PASS", func(*testutil.Dovecot) *pop3.Server { return &pop3.Server{} },
			func(t *testing.T, c *testutil.Client, d *testutil.Dovecot, _ string) {
				c.Play([]testutil.Step{
					{"USER " + d.User + "\r\n", "+OK"},
					{"PASS " + d.Password + "\r\n", "+OK Logged in."},
				})
			}},
		{"AUTH PLAIN with initial response", func(*testutil.Dovecot) *pop3.Server { return &pop3.Server{} },
			func(t *testing.T, c *testutil.Client, d *testutil.Dovecot, _ string) {
				c.Exchange("AUTH PLAIN "+testutil.B64("\x00"+d.User+"\x00"+d.Password)+"\r\n", "+OK Logged in.")
			}},
		{"APOP", func(d *testutil.Dovecot) *pop3.Server {
			return &pop3.Server{AuthMethods: []string{"plain", "apop"}, Config: session.Config{Auth: apopAuth(d)}}
		}, func(t *testing.T, c *testutil.Client, d *testutil.Dovecot, greeting string) {
			start, end := strings.IndexByte(greeting, '<'), strings.LastIndexByte(greeting, '>')
			if start < 0 || end < start {
				t.Fatalf("greeting %q has no APOP challenge", greeting)
			}
			digest := md5.Sum([]byte(greeting[start:end+1] + d.Password))
			c.Exchange(fmt.Sprintf("APOP %s %x\r\n", d.User, digest), "+OK Logged in.")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := testutil.StartDovecot(t)
			d.Deliver(t, []byte(dovecotMessage))
			c := testutil.Dial(t, "tcp", dovecotProxy(t, d, tt.srv(d)))
			greeting := c.Line()
			if !strings.HasPrefix(greeting, "+OK POP3 ready") {
				t.Fatalf("greeting %q", greeting)
			}
			tt.login(t, c, d, greeting)

			c.Exchange("STAT\r\n", fmt.Sprintf("+OK 1 %d", len(dovecotMessage)))
			if got := retr(t, c, 1, len(dovecotMessage)); got != dovecotMessage {
				t.Errorf("RETR 1 is %q, want %q", got, dovecotMessage)
			}
			c.Exchange("QUIT\r\n", "+OK Logging out", "<closed>")

			// Dovecot saw a USER/PASS login (method=PLAIN, whatever the
			// client used with the proxy) and the RETR.
			login := "pop3-login: Info: Login: user=<" + d.User + ">, method=PLAIN, "
			testutil.WaitFor(t, fmt.Sprintf("%q in Dovecot's log", login), func() bool { return d.LogContains(login) })
			testutil.WaitFor(t, "Dovecot's logout line with retr=1/", func() bool { return d.LogContains("retr=1/") })
		})
	}
}

// When Dovecot refuses the backend login (the Authenticator gave a wrong
// backend password), the client sees Dovecot's own words with
// proxy_pass_error_message and the proxy's generic refusal without, and
// the session goes on.
func TestDovecotBackendRefusal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pass bool
		want string
	}{
		{false, "-ERR Authentication failed"},
		{true, "-ERR [AUTH] Authentication failed."}, // Dovecot's, with its response code and full stop
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("proxy_pass_error_message=%v", tt.pass), func(t *testing.T) {
			t.Parallel()
			d := testutil.StartDovecot(t)
			proxy := dovecotProxy(t, d, &pop3.Server{Config: session.Config{
				PassErrorMessage: tt.pass,
				Auth:             auth.Static{"proxyuser": {Password: "client-secret", Backend: d.POP3Addr, BackendUser: d.User, BackendPassword: "wrong-backend-password"}},
			}})
			c := testutil.Dial(t, "tcp", proxy)
			c.Play([]testutil.Step{{"", "+OK POP3 ready"}, {"USER proxyuser\r\n", "+OK"}})
			c.Send("PASS client-secret")
			if got := c.Line(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			c.Exchange("NOOP\r\n", "+OK")
			if !d.LogContains("passwd-file(" + d.User + ",127.0.0.1,") {
				t.Error("Dovecot did not log the failed login")
			}
		})
	}
}

// curl is a second real client: it fetches a delivered message through the
// proxy by AUTH PLAIN, AUTH LOGIN and APOP, and exits with 67
// (CURLE_LOGIN_DENIED) on a wrong password.
func TestDovecotCurl(t *testing.T) {
	t.Parallel()
	curl := testutil.LookPath(t, "curl")
	d := testutil.StartDovecot(t)
	d.Deliver(t, []byte(dovecotMessage))
	creds := d.User + ":" + d.Password

	tests := []struct {
		name string
		// srv is the proxy; curl uses AUTH with a SASL mechanism the proxy
		// offers, else APOP when the greeting has a challenge.
		srv      func() *pop3.Server
		args     []string
		wantExit int
		wantOut  string
		wantSent string // in curl's -v trace of what it sent
	}{
		{"AUTH PLAIN", func() *pop3.Server { return &pop3.Server{} }, []string{"-u", creds}, 0, dovecotMessage, "> AUTH PLAIN"},
		// LOGIN is taken but not announced, as with nginx: curl does not
		// use a mechanism the server does not list.
		{"AUTH LOGIN not announced", func() *pop3.Server { return &pop3.Server{} }, []string{"-u", creds, "--login-options", "AUTH=LOGIN"}, 67, "", "> CAPA"},
		{"APOP", func() *pop3.Server {
			return &pop3.Server{AuthMethods: []string{"apop"}, Config: session.Config{Auth: apopAuth(d)}}
		}, []string{"-u", creds}, 0, dovecotMessage, "> APOP " + d.User + " "},
		{"wrong password", func() *pop3.Server { return &pop3.Server{} }, []string{"-u", d.User + ":wrong"}, 67, "", "> AUTH PLAIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := dovecotProxy(t, d, tt.srv())
			out, trace := testutil.Curl(t, curl, tt.wantExit, "pop3://"+proxy+"/1", tt.args...)
			if out != tt.wantOut {
				t.Errorf("curl wrote %q, want %q", out, tt.wantOut)
			}
			if !strings.Contains(trace, tt.wantSent) {
				t.Errorf("curl did not send %q:\n%s", tt.wantSent, trace)
			}
		})
	}
}
