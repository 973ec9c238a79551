//go:build unix

package smtp_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/resolver"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// delivered waits until Postfix has delivered a message containing body.
func delivered(t *testing.T, p *testutil.Postfix, body string) []byte {
	t.Helper()
	var msg []byte
	testutil.WaitFor(t, "delivery of "+body, func() bool {
		for _, m := range p.Messages(t) {
			if bytes.Contains(m, []byte(body)) {
				msg = m
				return true
			}
		}
		return false
	})
	return msg
}

// Authenticated submission through the proxy to a real Postfix: the
// message arrives byte for byte, and Postfix logs the client's address and
// login that XCLIENT passed.
func TestPostfixSubmission(t *testing.T) {
	pf := testutil.StartPostfix(t)
	addr := serve(t, &smtp.Server{Config: session.Config{Auth: table(pf.Addr)}})

	// The client connects from 127.0.0.2, so that the address Postfix logs
	// can only have come from XCLIENT.
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	conn, err := (&net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}).Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot use 127.0.0.2 here: %v", err)
	}
	c := gosmtp.NewClient(conn)
	defer c.Close()
	body := "Subject: through the proxy\r\n\r\nfirst line\r\n.leading dot\r\nlast line \r\n"
	submit(t, c, "client.example", body)
	// Postfix stores LF line ends and adds headers (Received, Message-Id…);
	// the body and the client's header must arrive unchanged.
	msg := string(delivered(t, pf, "first line"))
	_, gotBody, _ := strings.Cut(msg, "\n\n")
	_, wantBody, _ := strings.Cut(strings.ReplaceAll(body, "\r\n", "\n"), "\n\n")
	if gotBody != wantBody || !strings.Contains(msg, "\nSubject: through the proxy\n") {
		t.Errorf("delivered\n%q\nwant the body\n%q", msg, wantBody)
	}
	testutil.WaitFor(t, "Postfix's log of the XCLIENT facts", func() bool {
		return pf.LogContains("client=unknown[127.0.0.2], sasl_method=XCLIENT, sasl_username=alice")
	})
}

// swaks, pipelining, through the proxy: authenticated submission, and the
// MX front (smtp_auth none) routing by recipient.
func TestPostfixSwaks(t *testing.T) {
	swaks := testutil.LookPath(t, "swaks")
	pf := testutil.StartPostfix(t)
	mx := serve(t, &smtp.Server{AuthMethods: []string{"none"}, Config: session.Config{Auth: auth.AuthenticatorFunc(
		func(_ context.Context, req *auth.Request) (*auth.Result, error) {
			if !strings.Contains(req.SMTPTo[0], "@example.test>") {
				return &auth.Result{Error: "Relay access denied", SMTPCode: "554 5.7.1"}, nil
			}
			return &auth.Result{Backend: pf.Addr}, nil
		})}})
	submission := serve(t, &smtp.Server{Config: session.Config{Auth: table(pf.Addr)}})

	tests := []struct {
		name, server, marker string
		args                 []string
		fail                 bool
	}{
		{"submission with AUTH PLAIN", submission, "swaks-submission", []string{"--auth", "PLAIN", "--auth-user", user, "--auth-password", password}, false},
		{"submission with AUTH LOGIN", submission, "swaks-login", []string{"--auth", "LOGIN", "--auth-user", user, "--auth-password", password}, false},
		{"wrong password", submission, "swaks-refused", []string{"--auth", "PLAIN", "--auth-user", user, "--auth-password", "nope"}, true},
		{"MX front", mx, "swaks-mx", nil, false},
		{"MX front after HELO", mx, "swaks-mx-helo", []string{"--protocol", "SMTP", "--helo", "client.test"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--server", tt.server, "--from", "a@example.test", "--to", "bob@example.test",
				"--pipeline", "--header", "Subject: " + tt.marker, "--body", "body of " + tt.marker, "--timeout", "10"}, tt.args...)
			out, err := exec.Command(swaks, args...).CombinedOutput()
			if tt.fail {
				if err == nil || !strings.Contains(string(out), "535 5.7.8 Invalid login or password") {
					t.Fatalf("swaks: %v\n%s", err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			delivered(t, pf, "body of "+tt.marker)
		})
	}
	out, err := exec.Command(swaks, "--server", mx, "--from", "a@example.test", "--to", "someone@elsewhere.test", "--timeout", "10").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "554 5.7.1 Relay access denied") {
		t.Fatalf("MX front accepted a foreign recipient: %v\n%s", err, out)
	}
}

// A real Postfix, through the proxy, for a client that said HELO or
// nothing before AUTH or, with smtp_auth none, MAIL: the message arrives,
// with the HELO, the address and the login Postfix was told (Received and
// the log), under xclient on and off and with proxy_smtp_auth.
func TestPostfixWithoutHELO(t *testing.T) {
	d := testutil.StartDovecot(t)
	pf := testutil.StartPostfixSASL(t, d)
	type setting struct {
		name             string
		xclient, logInAs bool // XCLIENT; proxy_smtp_auth
	}
	settings := []setting{{"xclient", true, false}, {"xclient off", false, false},
		{"proxy_smtp_auth", true, true}, {"proxy_smtp_auth, xclient off", false, true}}
	for _, client := range []struct {
		name       string
		helo, none bool // the client says HELO; smtp_auth none
	}{
		{"AUTH without HELO", false, false},
		{"MAIL without HELO", false, true},
		{"HELO then AUTH", true, false},
	} {
		for _, set := range settings {
			t.Run(client.name+", "+set.name, func(t *testing.T) {
				a := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) (*auth.Result, error) {
					if req.Method == auth.MethodNone {
						return &auth.Result{Backend: pf.Addr}, nil
					}
					return auth.Static{d.User: {Password: d.Password, Backend: pf.Addr}}.Authenticate(ctx, req)
				})
				srv := &smtp.Server{DisableXClient: !set.xclient, BackendAuth: set.logInAs, Config: session.Config{Auth: a}}
				if client.none {
					srv.AuthMethods = []string{"none"}
				}
				// From 127.0.0.2, so that an address Postfix has from
				// XCLIENT differs from the proxy's.
				c := testutil.DialFrom(t, "127.0.0.2", serve(t, srv))
				from, _, _ := net.SplitHostPort(c.Conn.LocalAddr().String())
				marker := "without HELO: " + t.Name()
				steps := []testutil.Step{{"", "220 proxy.test ESMTP ready"}}
				if client.helo {
					steps = append(steps, testutil.Step{"HELO client.test\r\n", "250 proxy.test"})
				}
				mail := testutil.Step{"MAIL FROM:<a@example.test>\r\n", "250 2.1.0 Ok"} // Postfix's
				if client.none {
					mail[1] = "250 2.1.0 OK" // the proxy's
				} else {
					steps = append(steps, testutil.Step{"AUTH PLAIN " + testutil.B64("\x00"+d.User+"\x00"+d.Password) + "\r\n", "235 2.0.0 OK"})
				}
				c.Play(append(steps, mail,
					testutil.Step{"RCPT TO:<bob@example.test>\r\n", "250 2.1.5 Ok"},
					testutil.Step{"DATA\r\n", "354 "},
					testutil.Step{"Subject: " + marker + "\r\n\r\nbody\r\n.\r\n", "250 2.0.0 Ok: queued as "},
					testutil.Step{"QUIT\r\n", "221 "},
				))
				msg := string(delivered(t, pf, "Subject: "+marker+"\n"))

				// What Postfix was told: the client's HELO through
				// XCLIENT or in place of the proxy's; none at all
				// through XCLIENT ("unknown"), unless the proxy's EHLO
				// came before AUTH; the client's address with XCLIENT.
				helo, addr := "proxy.test", "127.0.0.1"
				switch {
				case client.helo:
					helo = "client.test"
				case set.xclient && !(set.logInAs && !client.none):
					helo = "unknown"
				}
				if set.xclient {
					addr = from
				}
				received := "Received: from " + helo + " (unknown [" + addr + "])"
				if !strings.Contains(msg, received) {
					t.Fatalf("no %q in\n%s", received, msg)
				}
				id := regexp.MustCompile(`\(Postfix\) with E?SMTPA? id ([0-9A-F]+)`).FindStringSubmatch(msg)
				if id == nil {
					t.Fatalf("no queue id in\n%s", msg)
				}
				logged := id[1] + ": client=unknown[" + addr + "]"
				switch {
				case client.none:
					logged += "\n"
				case set.logInAs:
					logged += ", sasl_method=PLAIN, sasl_username=" + d.User + "\n"
				case set.xclient:
					logged += ", sasl_method=XCLIENT, sasl_username=" + d.User + "\n"
				default:
					logged += "\n" // the proxy's own session: no login
				}
				testutil.WaitFor(t, "Postfix's log of "+logged, func() bool { return pf.LogContains(logged) })
			})
		}
	}
}

// With a resolver, the client's confirmed host name goes to the
// Authenticator (Client-Host) and to Postfix in XCLIENT NAME; a client
// without one is [UNAVAILABLE].
func TestPostfixResolvedName(t *testing.T) {
	pf := testutil.StartPostfix(t)
	ns := testutil.StartDNS(t,
		"2.0.0.127.in-addr.arpa. 60 IN PTR client.example.test.",
		"client.example.test. 60 IN A 127.0.0.2",
	)
	r, err := resolver.New(t.Context(), resolver.Config{Servers: []string{ns}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tt := range []struct{ from, name string }{
		{"127.0.0.2", "client.example.test"},
		{"127.0.0.3", "[UNAVAILABLE]"},
	} {
		t.Run(tt.from, func(t *testing.T) {
			hosts := make(chan string, 1)
			a := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) (*auth.Result, error) {
				hosts <- req.ClientHost
				return table(pf.Addr).Authenticate(ctx, req)
			})
			addr := serve(t, &smtp.Server{Config: session.Config{Auth: a, Resolver: r}})
			conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.from)}, Timeout: 5 * time.Second}).Dial("tcp", addr)
			if err != nil {
				t.Skipf("cannot use %s here: %v", tt.from, err)
			}
			c := gosmtp.NewClient(conn)
			defer c.Close()
			submit(t, c, "helo.example", "Subject: resolved "+tt.from+"\r\n\r\nbody\r\n")
			if host := <-hosts; host != tt.name {
				t.Errorf("Client-Host %q, want %q", host, tt.name)
			}
			logged := "client=" + tt.name + "[" + tt.from + "], sasl_method=XCLIENT"
			if tt.name == "[UNAVAILABLE]" {
				logged = "client=unknown[" + tt.from + "], sasl_method=XCLIENT"
			}
			testutil.WaitFor(t, "Postfix's log of "+logged, func() bool { return pf.LogContains(logged) })
		})
	}
}
