package mailproxy_test

// What the outage tests share: a real client of each protocol, the healthy
// backends and auth service, the proxy in front of them, and the check
// that a test leaves no goroutine or descriptor behind.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"go.uber.org/goleak"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// clientDeadline bounds a whole session of an outage test's client: a
// proxy that never answers fails the test instead of hanging it.
const clientDeadline = 30 * time.Second

// mailClient is a real client of one protocol, connected and greeted.
type mailClient interface {
	// Login logs in and returns the server's refusal, or nil.
	Login(user, password string) error
	// Command sends a command after the login, which the proxy relays.
	Command() error
	// Quit ends the session as the protocol says (LOGOUT, QUIT) and
	// returns an error unless the server answered and closed the
	// connection.
	Quit() error
}

// outageProtocol is one protocol as the outage tests drive it.
type outageProtocol struct {
	name string
	// server is the proxy's server for the protocol.
	server func(session.Config) mailproxy.Server
	// dial connects a real client and reads the greeting.
	dial func(addr string) (mailClient, error)
	// temporary reports whether a login's error is the protocol's
	// temporary failure: IMAP "NO [UNAVAILABLE]", POP3 "-ERR [SYS/TEMP]",
	// SMTP "451 4.3.0".
	temporary func(error) bool
}

var outageProtocols = []outageProtocol{
	{
		name:   "imap",
		server: func(c session.Config) mailproxy.Server { return &imap.Server{Config: c} },
		dial:   dialIMAP,
		temporary: func(err error) bool {
			var ie *goimap.Error
			return errors.As(err, &ie) && ie.Type == goimap.StatusResponseTypeNo && ie.Code == goimap.ResponseCodeUnavailable
		},
	},
	{
		name:   "pop3",
		server: func(c session.Config) mailproxy.Server { return &pop3.Server{Config: c} },
		dial:   dialPOP3,
		temporary: func(err error) bool {
			var pe pop3Error
			return errors.As(err, &pe) && strings.HasPrefix(string(pe), "-ERR [SYS/TEMP] ")
		},
	},
	{
		name:   "smtp",
		server: func(c session.Config) mailproxy.Server { return &smtp.Server{Config: c} },
		dial:   dialSMTP,
		temporary: func(err error) bool {
			var se *gosmtp.SMTPError
			return errors.As(err, &se) && se.Code == 451 && se.EnhancedCode == gosmtp.EnhancedCode{4, 3, 0}
		},
	},
}

// dialBounded connects to addr with clientDeadline on the whole session.
func dialBounded(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(clientDeadline))
	return conn, nil
}

// imapSession is go-imap's client.
type imapSession struct{ c *imapclient.Client }

func dialIMAP(addr string) (mailClient, error) {
	conn, err := dialBounded(addr)
	if err != nil {
		return nil, err
	}
	c := imapclient.New(conn, nil)
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, err
	}
	return &imapSession{c}, nil
}

func (s *imapSession) Login(user, password string) error { return s.c.Login(user, password).Wait() }
func (s *imapSession) Command() error                    { return s.c.Noop().Wait() }

func (s *imapSession) Quit() error {
	defer s.c.Close()
	if err := s.c.Logout().Wait(); err != nil {
		return err
	}
	select {
	case <-s.c.Closed():
		return nil
	case <-time.After(clientDeadline):
		return errors.New("connection still open after LOGOUT")
	}
}

// pop3Session is a raw POP3 dialogue; a refusal is a pop3Error.
type pop3Session struct {
	conn net.Conn
	r    *bufio.Reader
}

// pop3Error is a "-ERR" reply.
type pop3Error string

func (e pop3Error) Error() string { return string(e) }

func dialPOP3(addr string) (mailClient, error) {
	conn, err := dialBounded(addr)
	if err != nil {
		return nil, err
	}
	s := &pop3Session{conn: conn, r: bufio.NewReader(conn)}
	if _, err := s.reply(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return s, nil
}

// cmd sends a command and reads its one-line reply.
func (s *pop3Session) cmd(line string) (string, error) {
	if _, err := fmt.Fprintf(s.conn, "%s\r\n", line); err != nil {
		return "", err
	}
	return s.reply()
}

func (s *pop3Session) reply() (string, error) {
	l, err := s.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	l = strings.TrimRight(l, "\r\n")
	if !strings.HasPrefix(l, "+OK") {
		return "", pop3Error(l)
	}
	return l, nil
}

func (s *pop3Session) Login(user, password string) error {
	if _, err := s.cmd("USER " + user); err != nil {
		return err
	}
	_, err := s.cmd("PASS " + password)
	return err
}

func (s *pop3Session) Command() error {
	_, err := s.cmd("STAT")
	return err
}

func (s *pop3Session) Quit() error {
	defer s.conn.Close()
	if _, err := s.cmd("QUIT"); err != nil {
		return err
	}
	if n, err := s.r.Read(make([]byte, 1)); n > 0 || err == nil {
		return errors.New("connection still open after QUIT")
	}
	return nil
}

// smtpSession is go-smtp's client, after EHLO.
type smtpSession struct{ c *gosmtp.Client }

func dialSMTP(addr string) (mailClient, error) {
	conn, err := dialBounded(addr)
	if err != nil {
		return nil, err
	}
	c := gosmtp.NewClient(conn)
	if err := c.Hello("client.test"); err != nil {
		c.Close()
		return nil, err
	}
	return &smtpSession{c}, nil
}

func (s *smtpSession) Login(user, password string) error {
	return s.c.Auth(sasl.NewPlainClient("", user, password))
}

func (s *smtpSession) Command() error { return s.c.Mail("alice@example.test", nil) }

func (s *smtpSession) Quit() error {
	defer s.c.Close()
	return s.c.Quit() // QUIT, 221, then the end of the connection
}

// The accounts of the outage tests: user0, user1, … with one password.
// A client has an account of its own, since a POP3 maildrop takes one
// session at a time.
const (
	outageUsers    = 256
	outagePassword = "outage-secret-4711"
)

// outageUser is the n-th account.
func outageUser(n int) string { return fmt.Sprintf("user%d", n%outageUsers) }

// healthyBackends starts an in-process backend of each protocol, where
// every account logs in, and returns their addresses by protocol.
func healthyBackends(t *testing.T) map[string]string {
	t.Helper()
	users := make([]mailtest.User, outageUsers)
	for i := range users {
		users[i] = mailtest.User{Name: outageUser(i), Password: outagePassword}
	}
	imapBE, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: testutil.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { imapBE.Close() })
	pop3BE, err := mailtest.StartPOP3(mailtest.POP3Options{Users: users, Logger: testutil.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pop3BE.Close() })
	smtpBE, err := mailtest.StartSMTP(mailtest.SMTPOptions{Users: users, Logger: testutil.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { smtpBE.Close() })
	return map[string]string{"imap": imapBE.Addr, "pop3": pop3BE.Addr, "smtp": smtpBE.Addr}
}

// authService answers nginx's auth_http protocol: an account with its
// password goes to the backend of the request's Auth-Protocol, anyone
// else is refused.
func authService(backends map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if !strings.HasPrefix(r.Header.Get("Auth-User"), "user") || r.Header.Get("Auth-Pass") != outagePassword {
			h.Set("Auth-Status", "Invalid login or password")
			return
		}
		host, port, _ := net.SplitHostPort(backends[r.Header.Get("Auth-Protocol")])
		h.Set("Auth-Status", "OK")
		h.Set("Auth-Server", host)
		h.Set("Auth-Port", port)
	}
}

// startAuthService runs handler as an HTTP service on 127.0.0.1 until the
// test ends, and returns its auth_http URL.
func startAuthService(t *testing.T, handler http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv.URL + "/auth"
}

// startOutageProxy runs a Proxy with a server of the protocol for each of
// cfgs, on 127.0.0.1, and returns their addresses in order. The servers
// are named proxy.test; the Config's Resources (auth_http clients) close
// with the Proxy.
func startOutageProxy(t *testing.T, proto outageProtocol, resources []io.Closer, cfgs ...session.Config) []string {
	t.Helper()
	cfg := &mailproxy.Config{Resources: resources}
	for i, c := range cfgs {
		c.ServerName = "proxy.test"
		cfg.Servers = append(cfg.Servers, mailproxy.ServerConfig{
			Name:   fmt.Sprintf("%s-%d", proto.name, i),
			Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}},
			Server: proto.server(c),
		})
	}
	p := &mailproxy.Proxy{Config: cfg, Logger: testutil.Discard}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	addrs := make([]string, len(cfgs))
	for i := range cfgs {
		addrs[i] = p.ServerAddrs(i)[0].String()
	}
	return addrs
}

// noLeaks fails the test when, once it and its cleanups are done, a
// goroutine it started is still running (go.uber.org/goleak, which names
// the goroutine and its stack) or the process holds more sockets or files
// than before it. The relay's poller, started once for the process by
// whichever test relays first, is no leak, and neither is its epoll
// descriptor.
func noLeaks(t *testing.T) {
	t.Helper()
	before := openFDs(t)
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, current, goleak.IgnoreAnyFunction("github.com/mailproxy/mailproxy/internal/relay.(*poller).loop"))
		var now map[string]string
		for range 500 {
			if now = openFDs(t); len(now) <= len(before) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		var extra []string
		for fd, target := range now {
			if before[fd] != target {
				extra = append(extra, fd+" -> "+target)
			}
		}
		t.Errorf("%d descriptors open after the test, %d before: %v", len(now), len(before), extra)
	})
}

// openFDs returns the process's open sockets and files, descriptor by
// descriptor, with what each refers to; epoll and event descriptors
// (anon_inode) are left out.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	fds := make(map[string]string, len(entries))
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && !strings.HasPrefix(target, "anon_inode:") {
			fds[e.Name()] = target
		}
	}
	return fds
}

// durations summarises measured times as "min / median / max".
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("%v / %v / %v (n=%d)", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}
