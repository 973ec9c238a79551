//go:build unix

package imap_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// Integration tests of the proxy in front of a real Dovecot. Each test
// starts its own instance (testutil.StartDovecot skips the test when
// Dovecot is not installed): a failed login makes Dovecot delay later
// logins from the same address, so no instance outlives a failure.

// dovecotMessage has CR LF line ends, so what Dovecot stores is the
// message itself.
const dovecotMessage = "From: a@example.org\r\nTo: testuser@example.org\r\nSubject: through the proxy\r\n\r\nHello, Dovecot, through mailproxy.\r\n"

// dovecotProxy serves srv in front of d and returns its address; a nil
// Auth becomes a table that sends d's user, with d's password, to d.
func dovecotProxy(t *testing.T, d *testutil.Dovecot, srv *imap.Server) string {
	t.Helper()
	if srv.Config.Auth == nil {
		srv.Config.Auth = auth.Static{d.User: {Password: d.Password, Backend: d.IMAPAddr}}
	}
	return serve(t, srv)
}

// dialTCP connects to addr, from local when it is not nil, with a deadline
// for the whole conversation, and closes the connection when the test
// ends.
func dialTCP(t *testing.T, addr string, local net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return conn
}

// dovecotClient is an imapclient on a fresh connection to addr.
func dovecotClient(t *testing.T, addr string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	return imapclient.New(dialTCP(t, addr, nil), opts)
}

// A real IMAP client logs in through the proxy to Dovecot, by LOGIN and by
// AUTHENTICATE PLAIN, and works on the relayed session: a message goes in
// and comes back byte for byte, and IDLE reports a message that a second
// client appends meanwhile.
func TestDovecotRelay(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"LOGIN", "AUTHENTICATE PLAIN"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			d := testutil.StartDovecot(t)
			proxy := dovecotProxy(t, d, &imap.Server{})

			// The handler must not block the client: the channel has room
			// for far more updates than the test causes.
			exists := make(chan uint32, 64)
			c := dovecotClient(t, proxy, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
				Mailbox: func(m *imapclient.UnilateralDataMailbox) {
					if m.NumMessages != nil {
						select {
						case exists <- *m.NumMessages:
						default:
						}
					}
				},
			}})
			clientLogin(t, c, method, d.User, d.Password)

			sel, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				t.Fatalf("SELECT: %v", err)
			}
			if sel.NumMessages != 0 {
				t.Fatalf("SELECT: %d messages in a fresh INBOX", sel.NumMessages)
			}
			uid := appendMessage(t, c, dovecotMessage)

			section := &goimap.FetchItemBodySection{}
			msgs, err := c.Fetch(goimap.UIDSetNum(uid), &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{section}}).Collect()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("UID FETCH %d BODY[]: %v, %d messages", uid, err, len(msgs))
			}
			if got := msgs[0].FindBodySection(section); string(got) != dovecotMessage {
				t.Errorf("BODY[] is %q, want %q", got, dovecotMessage)
			}

			idle, err := c.Idle()
			if err != nil {
				t.Fatalf("IDLE: %v", err)
			}
			// A second client, through the proxy too, appends a message:
			// Dovecot tells the idling one "* 2 EXISTS".
			other := dovecotClient(t, proxy, nil)
			clientLogin(t, other, "LOGIN", d.User, d.Password)
			appendMessage(t, other, strings.Replace(dovecotMessage, "Hello", "Hello again", 1))
			if err := other.Logout().Wait(); err != nil {
				t.Errorf("second client's LOGOUT: %v", err)
			}

			timeout := time.After(5 * time.Second)
		wait:
			for {
				select {
				case n := <-exists:
					if n >= 2 {
						break wait
					}
				case <-timeout:
					t.Fatal("no EXISTS for the second message during IDLE after 5s")
				}
			}

			if err := idle.Close(); err != nil {
				t.Fatalf("ending IDLE: %v", err)
			}
			if err := idle.Wait(); err != nil {
				t.Fatalf("IDLE: %v", err)
			}
			if err := c.Logout().Wait(); err != nil {
				t.Errorf("LOGOUT: %v", err)
			}
		})
	}
}

// Dovecot answers LOGIN with its capabilities after login in the tagged
// OK ("a OK [CAPABILITY …] Logged in"), and the client gets that answer
// under its own tag: the list is the one Dovecot's CAPABILITY gives once
// logged in, not the proxy's. A real client takes it from there, without
// a CAPABILITY command of its own.
func TestDovecotLoginCapabilities(t *testing.T) {
	t.Parallel()
	d := testutil.StartDovecot(t)
	proxy := dovecotProxy(t, d, &imap.Server{})

	c := greet(t, proxy)
	answer := c.Cmd("a LOGIN "+d.User+" "+d.Password, "a ")
	if len(answer) != 1 {
		t.Errorf("LOGIN answered with %q, want the tagged reply alone (Dovecot's ID answer is the proxy's)", answer)
	}
	text, ok := strings.CutPrefix(answer[len(answer)-1], "a OK [CAPABILITY ")
	list, _, closed := strings.Cut(text, "] ")
	if !ok || !closed {
		t.Fatalf("LOGIN answered %q, want a OK [CAPABILITY …]", answer)
	}
	after := c.Cmd("b CAPABILITY", "b ")
	if len(after) != 2 || after[0] != "* CAPABILITY "+list {
		t.Errorf("Dovecot's CAPABILITY after login is %q, the LOGIN reply had %q", after, list)
	}
	if strings.Contains(list, "AUTH=") || !strings.Contains(list, "IDLE") {
		t.Errorf("the LOGIN reply's list %q is not Dovecot's after login", list)
	}
	c.Exchange("c LOGOUT\r\n", "* BYE", "c OK")

	conn := &recordingConn{Conn: dialTCP(t, proxy, nil)}
	client := imapclient.New(conn, nil)
	clientLogin(t, client, "LOGIN", d.User, d.Password)
	got := client.Caps()
	want := goimap.CapSet{}
	for _, name := range strings.Fields(list) {
		want[goimap.Cap(name)] = struct{}{}
	}
	if !maps.Equal(got, want) {
		t.Errorf("imapclient's capabilities after login are %v, want Dovecot's %v", slices.Sorted(maps.Keys(got)), list)
	}
	if sent := conn.sent.String(); strings.Contains(sent, "CAPABILITY") {
		t.Errorf("imapclient asked for the capabilities again:\n%s", sent)
	}
	if err := client.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
}

// recordingConn keeps what is written to it, as sent.
type recordingConn struct {
	net.Conn
	sent testutil.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.sent.Write(p)
	return c.Conn.Write(p)
}

// dovecotLogin matches Dovecot 2.3's login line with the default
// login_log_format_elements: the client address (rip) and the session ID.
var dovecotLogin = regexp.MustCompile(`imap-login: Info: Login: user=<([^>]*)>, .*\brip=([^,]+), .*\bsession=<([^>]+)>`)

// The client's own address reaches Dovecot through the ID command the
// proxy sends (x-originating-ip and x-originating-port; Dovecot honours
// them from its login_trusted_networks, 127.0.0.1). The client connects
// from 127.0.0.2, so the address Dovecot logs (rip=) is the client's and
// not the proxy's 127.0.0.1.
//
// Dovecot 2.3 does not log the remote port: the default
// login_log_format_elements has no %{rport}, and the harness's
// configuration is fixed. The port shows in the session ID instead: Dovecot
// 2.3 builds it (login-common's client_get_session_id) from 48 bits of a
// timestamp, the remote port in little-endian order and the remote IP
// address, once the ID command has set them.
func TestDovecotClientAddress(t *testing.T) {
	t.Parallel()
	d := testutil.StartDovecot(t)
	proxy := dovecotProxy(t, d, &imap.Server{})

	// All of 127/8 is loopback on Linux; where 127.0.0.2 cannot be bound
	// the test still checks the port.
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	if l, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Logf("cannot bind 127.0.0.2 (%v): the client connects from 127.0.0.1 and only the port is checked", err)
		local = nil
	} else {
		l.Close()
	}
	conn := dialTCP(t, proxy, local)
	client := conn.LocalAddr().(*net.TCPAddr)
	c := imapclient.New(conn, nil)
	clientLogin(t, c, "LOGIN", d.User, d.Password)

	rip := "rip=" + client.IP.String() + ","
	testutil.WaitFor(t, "Dovecot's login line with "+rip, func() bool { return d.LogContains(rip) })
	if d.LogContains("rport=") {
		t.Log("this Dovecot logs rport= itself")
	}
	log, err := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := dovecotLogin.FindSubmatch(log)
	if m == nil {
		t.Fatalf("no login line in Dovecot's log:\n%s", log)
	}
	if string(m[1]) != d.User || string(m[2]) != client.IP.String() {
		t.Errorf("Dovecot logged user=<%s> rip=%s, want user=<%s> rip=%s", m[1], m[2], d.User, client.IP)
	}
	id, err := base64.StdEncoding.DecodeString(string(m[3]))
	if err != nil || len(id) != 6+2+4 {
		t.Fatalf("session=<%s> is not Dovecot 2.3's timestamp, port and IPv4 address (%d bytes, %v)", m[3], len(id), err)
	}
	port := binary.LittleEndian.Uint16(id[6:8])
	ip := net.IP(id[8:12])
	if int(port) != client.Port || !ip.Equal(client.IP) {
		t.Errorf("Dovecot's session ID %s holds %s, want the client's %s", m[3], net.JoinHostPort(ip.String(), strconv.Itoa(int(port))), client)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
}

// curl is a second real client: it fetches a delivered message through the
// proxy by each login the proxy offers, runs a custom command, and exits
// with 67 (CURLE_LOGIN_DENIED) on a wrong password.
func TestDovecotCurl(t *testing.T) {
	t.Parallel()
	curl := testutil.LookPath(t, "curl")
	d := testutil.StartDovecot(t)
	d.Deliver(t, []byte(dovecotMessage))
	creds := d.User + ":" + d.Password

	tests := []struct {
		name string
		// authMethods and capabilities are the proxy's; curl uses
		// AUTHENTICATE with a mechanism offered, else the LOGIN command.
		authMethods, capabilities []string
		path                      string
		args                      []string
		wantExit                  int
		wantOut                   string // all of stdout, or with wantIn a part of it
		wantIn                    bool
		wantSent                  string // in curl's -v trace of what it sent
	}{
		{"AUTHENTICATE PLAIN", nil, nil, "/INBOX;UID=1", []string{"-u", creds}, 0, dovecotMessage, false, "> A002 AUTHENTICATE PLAIN"},
		// SASL-IR is read always, but announced only when configured:
		// then curl sends the credentials with the command.
		{"AUTHENTICATE PLAIN with SASL-IR", nil, []string{"IMAP4rev1", "SASL-IR"}, "/INBOX;UID=1", []string{"-u", creds}, 0, dovecotMessage, false, "> A002 AUTHENTICATE PLAIN AHRlc3R1c2Vy"},
		{"AUTHENTICATE LOGIN", []string{"login"}, nil, "/INBOX;UID=1", []string{"-u", creds}, 0, dovecotMessage, false, "> A002 AUTHENTICATE LOGIN"},
		{"LOGIN command", []string{}, nil, "/INBOX;UID=1", []string{"-u", creds}, 0, dovecotMessage, false, "> A002 LOGIN "},
		{"EXAMINE", nil, nil, "/INBOX", []string{"-u", creds, "-X", "EXAMINE INBOX"}, 0, "* 1 EXISTS\r\n", true, "EXAMINE INBOX"},
		{"wrong password", nil, nil, "/INBOX;UID=1", []string{"-u", d.User + ":wrong"}, 67, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := dovecotProxy(t, d, &imap.Server{AuthMethods: tt.authMethods, Capabilities: tt.capabilities})
			out, trace := testutil.Curl(t, curl, tt.wantExit, "imap://"+proxy+tt.path, tt.args...)
			if tt.wantIn && !strings.Contains(out, tt.wantOut) || !tt.wantIn && out != tt.wantOut {
				t.Errorf("curl wrote %q, want %q", out, tt.wantOut)
			}
			if !strings.Contains(trace, tt.wantSent) {
				t.Errorf("curl did not send %q:\n%s", tt.wantSent, trace)
			}
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
		{false, "a NO [AUTHENTICATIONFAILED] Authentication failed"},
		{true, "a NO [AUTHENTICATIONFAILED] Authentication failed."}, // Dovecot's text ends with a full stop
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("proxy_pass_error_message=%v", tt.pass), func(t *testing.T) {
			t.Parallel()
			d := testutil.StartDovecot(t)
			proxy := dovecotProxy(t, d, &imap.Server{Config: session.Config{
				PassErrorMessage: tt.pass,
				Auth:             auth.Static{"proxyuser": {Password: "client-secret", Backend: d.IMAPAddr, BackendUser: d.User, BackendPassword: "wrong-backend-password"}},
			}})
			c := greet(t, proxy)
			c.Send("a LOGIN proxyuser client-secret")
			if got := c.Line(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			c.Exchange("b NOOP\r\n", "b OK NOOP completed")
			if !d.LogContains("passwd-file(" + d.User + ",127.0.0.1,") {
				t.Error("Dovecot did not log the failed login")
			}
		})
	}
}

// The Authenticator's Result.User and Result.Password log in to Dovecot
// while the client used other credentials, which need literals (UTF-8, a
// quote, a line break): the proxy reads them, the Authenticator sees them
// intact, and Dovecot sees only its own user's. And a user that the proxy
// must send to Dovecot as a literal reaches it byte for byte.
func TestDovecotCredentialOverride(t *testing.T) {
	t.Parallel()
	const (
		clientUser = "jürgen@example.org"
		clientPass = "pässwörd with \"quotes\"\r\nand a line break"
	)
	literal := func(s string, sync bool) string {
		if sync {
			return fmt.Sprintf("{%d}\r\n", len(s))
		}
		return fmt.Sprintf("{%d+}\r\n", len(s))
	}
	tests := []struct {
		name     string
		wantUser string // as the client sends it
		result   func(d *testutil.Dovecot) auth.Result
		steps    func(d *testutil.Dovecot) []testutil.Step
		wantLog  string
	}{
		{"client password in a synchronising literal, Result.Password for Dovecot", "", func(d *testutil.Dovecot) auth.Result {
			return auth.Result{Backend: d.IMAPAddr, Password: d.Password}
		}, func(d *testutil.Dovecot) []testutil.Step {
			return []testutil.Step{
				{"a LOGIN " + d.User + " " + literal(clientPass, true), "+ OK"},
				{clientPass + "\r\n", "a OK [CAPABILITY "},
				{"b SELECT INBOX\r\n", "…b OK [READ-WRITE]"},
				{"c LOGOUT\r\n", "* BYE", "c OK"},
			}
		}, "imap-login: Info: Login: user=<testuser>, method=PLAIN, "},
		{"client user and password in non-synchronising literals, Result.User and Result.Password for Dovecot", clientUser, func(d *testutil.Dovecot) auth.Result {
			return auth.Result{Backend: d.IMAPAddr, User: d.User, Password: d.Password}
		}, func(d *testutil.Dovecot) []testutil.Step {
			return []testutil.Step{
				{"a LOGIN " + literal(clientUser, false) + clientUser + " " + literal(clientPass, false) + clientPass + "\r\n", "a OK [CAPABILITY "},
				{"b SELECT INBOX\r\n", "…b OK [READ-WRITE]"},
				{"c LOGOUT\r\n", "* BYE", "c OK"},
			}
		}, "imap-login: Info: Login: user=<testuser>, method=PLAIN, "},
		// Dovecot's passwd-file user is fixed by the harness, and its
		// auth_username_chars refuses any user that needs a literal, so
		// this login fails; but Dovecot's refusal (rather than a BAD,
		// which the client would see as "Backend unavailable") and its
		// log show that it parsed the proxy's literal.
		{"Result.User sent to Dovecot as a literal", clientUser, func(d *testutil.Dovecot) auth.Result {
			return auth.Result{Backend: d.IMAPAddr, User: "jürgen", Password: d.Password}
		}, func(d *testutil.Dovecot) []testutil.Step {
			return []testutil.Step{
				{"a LOGIN " + literal(clientUser, false) + clientUser + " " + literal(clientPass, false) + clientPass + "\r\n", "a NO [AUTHENTICATIONFAILED] Authentication failed."},
			}
		}, "(username: jürgen)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := testutil.StartDovecot(t)
			wantUser := tt.wantUser
			if wantUser == "" {
				wantUser = d.User
			}
			proxy := dovecotProxy(t, d, &imap.Server{Config: session.Config{
				PassErrorMessage: true,
				Auth: authFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
					if req.User != wantUser || req.Password != clientPass {
						return &auth.Result{Error: fmt.Sprintf("the Authenticator got user %q", req.User)}, nil
					}
					res := tt.result(d)
					return &res, nil
				}),
			}})
			greet(t, proxy).Play(tt.steps(d))
			testutil.WaitFor(t, fmt.Sprintf("%q in Dovecot's log", tt.wantLog), func() bool { return d.LogContains(tt.wantLog) })
		})
	}
}
