package mailproxy_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// The bounds of the auth service outage test.
const (
	// authHTTPTimeout is the servers' auth_http_timeout.
	authHTTPTimeout = 3 * time.Second
	// slowAnswer is how long the slow service takes over one request in
	// slowEvery: longer than authHTTPTimeout.
	slowAnswer = 5 * time.Second
	slowEvery  = 10
	// timeMargin is what a loaded machine may add to a bound.
	timeMargin = 2 * time.Second
	// quickLogin bounds a login that nothing holds up.
	quickLogin = authHTTPTimeout / 2
)

// brokenService is an auth_http service that fails in one way.
type brokenService struct {
	url      string
	requests atomic.Int64 // requests it has read
}

// authOutage is one way for the auth service to fail.
type authOutage struct {
	name string
	// start starts the service; healthy is how a working one answers.
	start func(t *testing.T, healthy http.Handler) *brokenService
	// hangs: requests go unanswered, and the client's error comes when
	// auth_http_timeout expires; with slowEvery, one request in
	// slowEvery.
	hangs     bool
	slowEvery int
}

var authOutages = []authOutage{
	{name: "refused", start: func(t *testing.T, _ http.Handler) *brokenService {
		return &brokenService{url: "http://" + testutil.FreeAddr(t) + "/auth"} // nothing listens there
	}},
	{name: "timing out", hangs: true, start: func(t *testing.T, _ http.Handler) *brokenService {
		return rawService(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // reads on, answers never
	}},
	{name: "slow", hangs: true, slowEvery: slowEvery, start: func(t *testing.T, healthy http.Handler) *brokenService {
		svc := &brokenService{}
		svc.url = startAuthService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if svc.requests.Add(1)%slowEvery == 0 {
				select {
				case <-time.After(slowAnswer):
				case <-r.Context().Done(): // the proxy gave up
					return
				}
			}
			healthy.ServeHTTP(w, r)
		}))
		return svc
	}},
	{name: "garbage", start: func(t *testing.T, _ http.Handler) *brokenService {
		// Not HTTP: an SSH server's banner and binary junk, and the
		// connection stays open.
		return rawService(t, func(c net.Conn) {
			io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\x00\x14\xff\xfe\x80junk")
			io.Copy(io.Discard, c)
		})
	}},
	{name: "status 500", start: func(t *testing.T, healthy http.Handler) *brokenService {
		// An error status, with the headers of an accepted login: the
		// status decides.
		svc := &brokenService{}
		svc.url = startAuthService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			svc.requests.Add(1)
			rec := httptest.NewRecorder()
			healthy.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(http.StatusInternalServerError)
		}))
		return svc
	}},
	{name: "closing mid-response", start: func(t *testing.T, _ http.Handler) *brokenService {
		return rawService(t, func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Po")
		})
	}},
}

// rawService accepts TCP connections on 127.0.0.1 until the test ends,
// reads an HTTP request on each, counts it, and hands the connection to
// answer; the connection is closed when answer returns, or when the test
// ends.
func rawService(t *testing.T, answer func(net.Conn)) *brokenService {
	t.Helper()
	svc := &brokenService{}
	addr := testutil.Accept(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		svc.requests.Add(1)
		answer(c)
	}).Addr().String()
	svc.url = "http://" + addr + "/auth"
	return svc
}

// loginResult is how one client's login went.
type loginResult struct {
	dial error         // connecting or the greeting failed
	err  error         // the login's answer: nil, or the refusal
	took time.Duration // from the login command to its answer
	done time.Time     // when the answer came
	quit error         // how the session ended (LOGOUT, QUIT)
}

// tryLogin connects to addr with a real client of proto, logs in as user,
// and ends the session.
func tryLogin(proto outageProtocol, addr, user string) loginResult {
	c, err := proto.dial(addr)
	if err != nil {
		return loginResult{dial: err}
	}
	start := time.Now()
	err = c.Login(user, outagePassword)
	r := loginResult{err: err, took: time.Since(start), done: time.Now()}
	r.quit = c.Quit()
	return r
}

// The auth service fails in every way a service fails: clients get their
// protocol's temporary error (IMAP "NO [UNAVAILABLE]", POP3 "-ERR
// [SYS/TEMP]", SMTP "451 4.3.0") within auth_http_timeout, and go on to
// close their sessions normally; at the same time, logins through a
// working service, and the slow service's quick answers, go through at
// their usual latency.
func TestAuthServiceOutage(t *testing.T) {
	noLeaks(t)
	healthy := authService(healthyBackends(t))
	healthyURL := startAuthService(t, healthy)
	clients, checks := 20, 5
	if !testing.Short() {
		clients, checks = 100, 20
	}
	for _, o := range authOutages {
		t.Run(o.name, func(t *testing.T) {
			for _, proto := range outageProtocols {
				t.Run(proto.name, func(t *testing.T) {
					t.Parallel()
					testAuthOutage(t, o, proto, healthy, healthyURL, clients, checks)
				})
			}
		})
	}
}

// testAuthOutage starts clients logins through the broken service at once
// and, while they wait, checks logins through the healthy one.
func testAuthOutage(t *testing.T, o authOutage, proto outageProtocol, healthy http.Handler, healthyURL string, clients, checks int) {
	svc := o.start(t, healthy)
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	broken := &auth.HTTP{URL: svc.url, Timeout: authHTTPTimeout, Logger: log}
	working := &auth.HTTP{URL: healthyURL, Timeout: authHTTPTimeout, Logger: log}
	cfg := func(a auth.Authenticator) session.Config {
		// The session's timeout is long: auth_http_timeout bounds the wait.
		return session.Config{Auth: a, Timeout: 30 * time.Second, Logger: log}
	}
	addrs := startOutageProxy(t, proto, []io.Closer{broken, working}, cfg(broken), cfg(working))

	results := make([]loginResult, clients)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = tryLogin(proto, addrs[0], outageUser(i)) })
	}
	if o.hangs {
		// Every request is with the service: those it answers are done,
		// the others wait.
		testutil.WaitFor(t, "every login to reach the auth service", func() bool { return svc.requests.Load() == int64(clients) })
	}
	checked := make([]loginResult, checks)
	for i := range checked {
		checked[i] = tryLogin(proto, addrs[1], outageUser(clients+i))
	}
	wg.Wait()

	var temporary, quick, healthyTook []time.Duration
	var firstTemporary time.Time
	for i, r := range results {
		switch {
		case r.dial != nil:
			t.Errorf("client %d: %v", i, r.dial)
			continue
		case r.err == nil:
			quick = append(quick, r.took)
		case proto.temporary(r.err):
			temporary = append(temporary, r.took)
			if firstTemporary.IsZero() || r.done.Before(firstTemporary) {
				firstTemporary = r.done
			}
		default:
			t.Errorf("client %d: login answered %q, want the temporary error", i, r.err)
		}
		if r.quit != nil {
			t.Errorf("client %d: the session did not end cleanly: %v", i, r.quit)
		}
	}
	want := clients
	if o.slowEvery > 0 {
		want = clients / o.slowEvery
	}
	if len(temporary) != want || len(quick) != clients-want {
		t.Errorf("%d temporary errors and %d logins, want %d and %d", len(temporary), len(quick), want, clients-want)
	}
	for _, took := range temporary {
		if took > authHTTPTimeout+timeMargin {
			t.Errorf("temporary error after %v, beyond auth_http_timeout %v", took, authHTTPTimeout)
		}
		// The request may end with the session's own deadline, set when
		// the proxy began to wait for the command: a few milliseconds
		// before the client sent it.
		if o.hangs && took < authHTTPTimeout-100*time.Millisecond {
			t.Errorf("temporary error after %v, before auth_http_timeout %v ended the request", took, authHTTPTimeout)
		}
	}
	for i, r := range results {
		if r.err == nil && (r.took > quickLogin || o.hangs && !r.done.Before(firstTemporary)) {
			t.Errorf("client %d: a quick answer of the service took %v, until %v after the first temporary error", i, r.took, r.done.Sub(firstTemporary))
		}
	}
	for i, r := range checked {
		healthyTook = append(healthyTook, r.took)
		switch {
		case r.dial != nil || r.err != nil || r.quit != nil:
			t.Errorf("login %d through the healthy service: %v, %v, %v", i, r.dial, r.err, r.quit)
		case r.took > quickLogin:
			t.Errorf("login %d through the healthy service took %v", i, r.took)
		case o.hangs && !r.done.Before(firstTemporary):
			t.Errorf("login %d through the healthy service ended after the broken service's clients had their answer", i)
		}
	}
	out := logs.String()
	if !strings.Contains(out, `msg="auth http failed"`) || !strings.Contains(out, `msg="authentication unavailable"`) {
		t.Errorf("the failures are not logged:\n%s", out)
	}
	if strings.Contains(out, outagePassword) {
		t.Errorf("the password is in the logs:\n%s", out)
	}
	t.Logf("%s: temporary error after %s; the service's quick answers %s; logins through the healthy service meanwhile %s",
		t.Name(), durations(temporary), durations(quick), durations(healthyTook))
}
