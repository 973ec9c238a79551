package pop3_test

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
)

const (
	user     = "alice"
	password = "secret"
	message  = "From: a@example.org\r\nSubject: hi\r\n\r\n.dot-stuffed line\r\nend\r\n"
)

// start runs srv in front of a POP3 backend holding one message for
// alice; srv.Auth defaults to a table routing alice there.
func start(t *testing.T, srv *pop3.Server) (proxy string, backend *mailtest.POP3Server) {
	t.Helper()
	be, err := mailtest.StartPOP3(mailtest.POP3Options{Users: []mailtest.User{{Name: user, Password: password}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	if err := be.AddMessage(user, []byte(message)); err != nil {
		t.Fatal(err)
	}
	if srv.Config.Auth == nil {
		srv.Config.Auth = auth.Static{
			user:     {Password: password, Backend: be.Addr},
			"mapped": {Password: "x", Backend: be.Addr, BackendUser: user, BackendPassword: "wrong"},
		}
	}
	return serve(t, srv), be
}

// serve runs srv, logging nothing unless it has a Logger, and returns its
// address.
func serve(t *testing.T, srv *pop3.Server) string {
	t.Helper()
	srv.Config.Logger = cmp.Or(srv.Config.Logger, testutil.Discard)
	return testutil.Serve(t, srv)
}

func TestTranscripts(t *testing.T) {
	tests := []struct {
		name  string
		srv   *pop3.Server
		steps []testutil.Step
	}{
		{"USER PASS then the backend's session", &pop3.Server{}, []testutil.Step{
			{"", "+OK POP3 ready"},
			{"USER alice\r\n", "+OK"},
			{"PASS secret\r\n", "+OK"},
			{"STAT\r\n", "+OK 1 "},
			{"RETR 1\r\n", "+OK", "From: a@example.org", "Subject: hi", "", "..dot-stuffed line", "end", "."},
			{"QUIT\r\n", "+OK", "<closed>"},
		}},
		{"CAPA default", &pop3.Server{}, []testutil.Step{
			{"", "+OK POP3 ready"},
			{"CAPA\r\n", "+OK Capability list follows", "TOP", "USER", "UIDL", "SASL PLAIN", "."},
			{"AUTH\r\n", "+OK methods supported:", "PLAIN", "."},
		}},
		{"mechanisms in nginx's order, whatever the directive's", &pop3.Server{AuthMethods: []string{"external", "cram-md5", "apop", "plain"}}, []testutil.Step{
			{"", "+OK POP3 ready <"},
			{"CAPA\r\n", "+OK Capability list follows", "TOP", "USER", "UIDL", "SASL PLAIN CRAM-MD5 EXTERNAL", "."},
		}},
		{"CAPA without plain has no USER", &pop3.Server{AuthMethods: []string{"apop", "cram-md5"}, Capabilities: []string{"TOP", "USER", "PIPELINING"}}, []testutil.Step{
			{"", "+OK POP3 ready <"},
			{"CAPA\r\n", "+OK", "TOP", "PIPELINING", "SASL CRAM-MD5", "."},
			{"USER alice\r\n", "-ERR USER not allowed"},
			{"AUTH\r\n", "+OK methods supported:", "CRAM-MD5", "."},
			{"AUTH PLAIN " + testutil.B64("\x00alice\x00secret") + "\r\n", "-ERR unsupported authentication mechanism"},
			{"AUTH LOGIN\r\n", "-ERR unsupported authentication mechanism"},
		}},
		{"AUTH PLAIN with and without initial response", &pop3.Server{}, []testutil.Step{
			{"", "+OK"},
			{"AUTH PLAIN\r\n", "+ "},
			{"*\r\n", "-ERR authentication cancelled"},
			{"AUTH PLAIN\r\n", "+ "},
			{"%%%\r\n", "-ERR invalid base64"},
			{"AUTH PLAIN " + testutil.B64("\x00alice\x00secret") + "\r\n", "+OK"},
			{"STAT\r\n", "+OK 1 "},
		}},
		{"AUTH LOGIN, taken where USER/PASS is though not announced", &pop3.Server{}, []testutil.Step{
			{"", "+OK"},
			{"AUTH LOGIN\r\n", "+ VXNlcm5hbWU6"},
			{testutil.B64("alice") + "\r\n", "+ UGFzc3dvcmQ6"},
			{testutil.B64("secret") + "\r\n", "+OK"},
		}},
		{"errors", &pop3.Server{Config: session.Config{MaxErrors: 10}}, []testutil.Step{
			{"", "+OK"},
			{"PASS secret\r\n", "-ERR USER first"},
			{"RETR 1\r\n", "-ERR invalid command"},
			{"APOP alice 0123456789abcdef0123456789abcdef\r\n", "-ERR APOP not allowed"},
			{"AUTH CRAM-MD5\r\n", "-ERR unsupported authentication mechanism"},
			{"AUTH EXTERNAL =\r\n", "-ERR unsupported"},
			{"USER\r\n", "-ERR invalid USER argument"},
			{"NOOP\r\n", "+OK"},
			{strings.Repeat("x", 5000) + "\r\n", "-ERR line too long", "<closed>"},
		}},
		{"max_errors", &pop3.Server{}, []testutil.Step{
			{"", "+OK"},
			{"X\r\nX\r\nX\r\nX\r\nX\r\n", "-ERR", "-ERR", "-ERR", "-ERR", "-ERR", "-ERR too many invalid commands", "<closed>"},
		}},
		{"wrong password closes as nginx does without Auth-Wait", &pop3.Server{}, []testutil.Step{
			{"", "+OK"},
			{"USER alice\r\nPASS nope\r\n", "+OK", "-ERR Invalid login or password", "<closed>"},
		}},
		{"backend refusal, generic", &pop3.Server{}, []testutil.Step{
			{"", "+OK"},
			{"USER mapped\r\nPASS x\r\n", "+OK", "-ERR Authentication failed"},
			{"NOOP\r\n", "+OK"},
		}},
		{"backend refusal passed on", &pop3.Server{Config: session.Config{PassErrorMessage: true}}, []testutil.Step{
			{"", "+OK"},
			{"USER mapped\r\nPASS x\r\n", "+OK", "-ERR [AUTH]"},
		}},
		{"pipelined after PASS", &pop3.Server{}, []testutil.Step{
			{"", "+OK"},
			{"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n", "+OK", "+OK", "+OK 1 ", "+OK", "<closed>"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy, _ := start(t, tt.srv)
			testutil.Dial(t, "tcp", proxy).Play(tt.steps)
		})
	}
}

// APOP: the greeting's challenge reaches the Authenticator as the salt with
// the client's digest, and the Authenticator gives the backend password.
func TestAPOPAndCRAMMD5(t *testing.T) {
	backend := ""
	check := func(req *auth.Request) bool {
		switch req.Method {
		case auth.MethodAPOP:
			sum := md5.Sum([]byte(req.Salt + password))
			return req.Password == hex.EncodeToString(sum[:])
		case auth.MethodCRAMMD5:
			mac := hmac.New(md5.New, []byte(password))
			mac.Write([]byte(req.Salt))
			return req.Password == hex.EncodeToString(mac.Sum(nil))
		}
		return false
	}
	srv := &pop3.Server{AuthMethods: []string{"apop", "cram-md5"}, Config: session.Config{Auth: auth.AuthenticatorFunc(
		func(_ context.Context, req *auth.Request) (*auth.Result, error) {
			if req.User != user || !check(req) {
				return &auth.Result{Error: "bad digest"}, nil
			}
			return &auth.Result{Backend: backend, Password: password}, nil
		})}}
	proxy, be := start(t, srv)
	backend = be.Addr

	c := testutil.Dial(t, "tcp", proxy)
	greeting := c.Line()
	salt := greeting[strings.Index(greeting, "<"):]
	sum := md5.Sum([]byte(salt + password))
	c.Play([]testutil.Step{{fmt.Sprintf("APOP alice %x\r\n", sum), "+OK"}, {"STAT\r\n", "+OK 1 "}, {"QUIT\r\n", "+OK", "<closed>"}})

	c = testutil.Dial(t, "tcp", proxy)
	c.Line()
	c.Send("AUTH CRAM-MD5")
	challenge, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(c.Line(), "+ "))
	mac := hmac.New(md5.New, []byte(password))
	mac.Write(challenge)
	c.Exchange(testutil.B64(user+" "+hex.EncodeToString(mac.Sum(nil)))+"\r\n", "+OK")
}

func TestTemporaryFailures(t *testing.T) {
	deadAddr := testutil.FreeAddr(t) // nothing listens there
	for name, a := range map[string]auth.Authenticator{
		"no authenticator": nil,
		"backend down": auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
			return &auth.Result{Backend: deadAddr}, nil
		}),
	} {
		t.Run(name, func(t *testing.T) {
			want := map[bool]string{true: "-ERR [SYS/TEMP] Temporary authentication failure", false: "-ERR [SYS/TEMP] Backend unavailable"}[a == nil]
			c := testutil.Dial(t, "tcp", serve(t, &pop3.Server{Config: session.Config{Auth: a}}))
			c.Play([]testutil.Step{{"", "+OK"}, {"USER alice\r\nPASS secret\r\n", "+OK", want}, {"NOOP\r\n", "+OK"}})
		})
	}
}

func TestTimeout(t *testing.T) {
	proxy, _ := start(t, &pop3.Server{Config: session.Config{Timeout: 100 * time.Millisecond}})
	c := testutil.Dial(t, "tcp", proxy)
	c.Line()
	if !c.Closed() {
		t.Fatal("idle client not disconnected")
	}
}

// A backend that refuses the session in its greeting is unavailable, not a
// refused login, whatever proxy_pass_error_message says.
func TestBackendGreetingRefusal(t *testing.T) {
	fake := testutil.StartFake(t, testutil.Script{Greeting: "-ERR [SYS/TEMP] too many connections"})
	srv := &pop3.Server{Config: session.Config{PassErrorMessage: true, Auth: auth.AuthenticatorFunc(
		func(context.Context, *auth.Request) (*auth.Result, error) {
			return &auth.Result{Backend: fake.Addr}, nil
		})}}
	testutil.Dial(t, "tcp", serve(t, srv)).Play([]testutil.Step{
		{"", "+OK"},
		{"USER alice\r\nPASS secret\r\n", "+OK", "-ERR [SYS/TEMP] Backend unavailable"},
	})
}
