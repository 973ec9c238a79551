package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawService is an auth service on a real socket that records each request
// as it came on the wire and answers with a fixed response.
type rawService struct {
	ln       net.Listener
	response string
	mu       sync.Mutex
	requests []string
	conns    atomic.Int32
}

func startRaw(t *testing.T, network, addr, response string) *rawService {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &rawService{ln: ln, response: response}
	go s.serve()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *rawService) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		go s.handle(c)
	}
}

// handle answers every request on c (keep-alive) until the client closes.
func (s *rawService) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		var req strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			req.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		s.mu.Lock()
		s.requests = append(s.requests, req.String())
		s.mu.Unlock()
		if _, err := c.Write([]byte(s.response)); err != nil {
			return
		}
		if strings.Contains(s.response, "Connection: close") {
			return
		}
	}
}

func (s *rawService) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return ""
	}
	return s.requests[len(s.requests)-1]
}

const okResponse = "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\nContent-Length: 0\r\n\r\n"

func tcpAddr(s string) *net.TCPAddr {
	a, _ := net.ResolveTCPAddr("tcp", s)
	return a
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The request carries nginx's headers, byte for byte, for every method and
// protocol.
func TestHTTPRequestHeaders(t *testing.T) {
	withPass := strings.Replace(okResponse, "\r\n\r\n", "\r\nAuth-Pass: backend\r\n\r\n", 1)
	svc := startRaw(t, "tcp", "127.0.0.1:0", withPass)
	h := &HTTP{URL: svc.ln.Addr().String() + "/mail/auth", Header: [][2]string{{"X-Auth-Key", "secret key"}}, PassClientCert: true, Logger: quietLog()}
	base := Request{Protocol: "imap", User: "alice smith", Password: "p%ss wörd", Attempt: 2,
		ClientAddr: tcpAddr("192.0.2.42:51000"), ServerName: "mx.test"}
	tests := []struct {
		name   string
		modify func(r *Request)
		want   []string
		absent []string
	}{
		{"imap plain", func(r *Request) { r.Method = MethodPlain },
			[]string{"Auth-Method: plain", "Auth-User: alice%20smith", "Auth-Pass: p%25ss%20wörd", "Auth-Protocol: imap",
				"Auth-Login-Attempt: 2", "Client-IP: 192.0.2.42", "X-Auth-Key: secret key"},
			[]string{"Auth-Salt", "Client-Host", "Auth-SSL", "Auth-SMTP", "Proxy-Protocol", "User-Agent", "Accept-Encoding"}},
		{"pop3 login is sent as plain", func(r *Request) { r.Protocol, r.Method = "pop3", MethodLogin },
			[]string{"Auth-Method: plain", "Auth-Protocol: pop3"}, []string{"Auth-Salt"}},
		{"pop3 apop", func(r *Request) {
			r.Protocol, r.Method, r.Password, r.Salt = "pop3", MethodAPOP, "0123456789abcdef0123456789abcdef", "<1.2@mx.test>"
		}, []string{"Auth-Method: apop", "Auth-Pass: 0123456789abcdef0123456789abcdef", "Auth-Salt: <1.2@mx.test>"}, nil},
		{"smtp cram-md5", func(r *Request) { r.Protocol, r.Method, r.Salt = "smtp", MethodCRAMMD5, "<3.4@mx.test>" },
			[]string{"Auth-Method: cram-md5", "Auth-Salt: <3.4@mx.test>", "Auth-Protocol: smtp"}, nil},
		{"external with TLS facts", func(r *Request) {
			r.Method, r.Password = MethodExternal, ""
			r.TLS = &TLSInfo{Protocol: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", Verify: "SUCCESS", Subject: "CN=alice,O=Test", Issuer: "CN=CA", Serial: "0A1B",
				Fingerprint: "00ff", Certificate: "-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n"}
		}, []string{"Auth-Method: external", "Auth-Pass: ", "Auth-SSL: on", "Auth-SSL-Protocol: TLSv1.3", "Auth-SSL-Cipher: TLS_AES_256_GCM_SHA384",
			"Auth-SSL-Verify: SUCCESS", "Auth-SSL-Subject: CN=alice,O=Test",
			"Auth-SSL-Issuer: CN=CA", "Auth-SSL-Serial: 0A1B", "Auth-SSL-Fingerprint: 00ff",
			"Auth-SSL-Cert: -----BEGIN%20CERTIFICATE-----%0AMII=%0A-----END%20CERTIFICATE-----%0A"}, nil},
		{"TLS without client certificates: version and cipher only", func(r *Request) {
			r.Method = MethodPlain
			r.TLS = &TLSInfo{Protocol: "TLSv1.2", Cipher: "ECDHE-RSA-AES128-GCM-SHA256"}
		}, []string{"Auth-SSL: on", "Auth-SSL-Protocol: TLSv1.2", "Auth-SSL-Cipher: ECDHE-RSA-AES128-GCM-SHA256"},
			[]string{"Auth-SSL-Verify", "Auth-SSL-Subject", "Auth-SSL-Issuer", "Auth-SSL-Serial", "Auth-SSL-Fingerprint", "Auth-SSL-Cert"}},
		{"smtp none", func(r *Request) {
			r.Protocol, r.Method, r.User, r.Password = "smtp", MethodNone, "", ""
			r.SMTPHelo, r.SMTPFrom, r.SMTPTo = "client.example", "MAIL FROM:<a@b.example> SIZE=100", []string{"RCPT TO:<c@d.example>"}
		}, []string{"Auth-Method: none", "Auth-User: ", "Auth-SMTP-Helo: client.example", "Auth-SMTP-From: MAIL FROM:<a@b.example> SIZE=100",
			"Auth-SMTP-To: RCPT TO:<c@d.example>"}, nil},
		{"client host and PROXY protocol", func(r *Request) {
			r.Method, r.ClientHost = MethodPlain, "client.example.org"
			r.Proxy = &ProxyInfo{Source: tcpAddr("[2001:db8::1]:4000"), Destination: tcpAddr("198.51.100.1:993")}
		}, []string{"Client-Host: client.example.org", "Proxy-Protocol-Addr: 2001:db8::1", "Proxy-Protocol-Port: 4000",
			"Proxy-Protocol-Server-Addr: 198.51.100.1", "Proxy-Protocol-Server-Port: 993"}, nil},
		{"control characters cannot break a header", func(r *Request) {
			r.Protocol, r.Method, r.User = "smtp", MethodNone, "x"
			r.SMTPHelo = "evil\r\nAuth-Status: OK"
		}, []string{"Auth-SMTP-Helo: evil%0D%0AAuth-Status: OK"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := base
			tt.modify(&req)
			if _, err := h.Authenticate(context.Background(), &req); err != nil {
				t.Fatal(err)
			}
			got := svc.last()
			if !strings.HasPrefix(got, "GET /mail/auth HTTP/1.1\r\nHost: 127.0.0.1\r\n") {
				t.Errorf("request starts %q", got[:min(len(got), 60)])
			}
			for _, w := range tt.want {
				if !strings.Contains(got, "\r\n"+w+"\r\n") {
					t.Errorf("no line %q in\n%s", w, got)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(got, "\r\n"+a) {
					t.Errorf("unexpected %q in\n%s", a, got)
				}
			}
		})
	}
}

// respond makes an auth service whose answer depends on the request.
func respond(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv.URL + "/auth"
}

func headers(status int, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header()[kv[i]] = append(w.Header()[kv[i]], kv[i+1])
		}
		w.WriteHeader(status)
		fmt.Fprint(w, "the body is ignored")
	}
}

func TestHTTPResponses(t *testing.T) {
	plain := Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p", ClientAddr: tcpAddr("127.0.0.1:1")}
	apop := Request{Protocol: "pop3", Method: MethodAPOP, User: "u", Password: strings.Repeat("a", 32), Salt: "<1.2@x>", ClientAddr: tcpAddr("127.0.0.1:1")}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		req     Request
		want    Result
		wantErr string
	}{
		{"ok", headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "143"), plain, Result{Backend: "10.0.0.7:143"}, ""},
		{"ok with 204 as in Angie's example", headers(204, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "143"), plain, Result{Backend: "10.0.0.7:143"}, ""},
		{"ok with backend credentials", headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "110", "Auth-User", "u@int", "Auth-Pass", "pw"),
			apop, Result{Backend: "10.0.0.7:110", User: "u@int", Password: "pw"}, ""},
		{"ipv6 and host name servers", headers(200, "Auth-Status", "OK", "Auth-Server", "2001:db8::7", "Auth-Port", "993"), plain, Result{Backend: "[2001:db8::7]:993"}, ""},
		{"host name server", headers(200, "Auth-Status", "OK", "Auth-Server", "imap-3.internal", "Auth-Port", "143"), plain, Result{Backend: "imap-3.internal:143"}, ""},
		{"refused", headers(200, "Auth-Status", "Invalid login or password"), plain, Result{Error: "Invalid login or password"}, ""},
		{"refused with wait and code", headers(200, "Auth-Status", "Try later", "Auth-Wait", "3", "Auth-Error-Code", "451 4.3.0"),
			plain, Result{Error: "Try later", Wait: 3 * time.Second, SMTPCode: "451 4.3.0"}, ""},
		{"bad Auth-Wait is no wait", headers(200, "Auth-Status", "No", "Auth-Wait", "soon"), plain, Result{Error: "No"}, ""},
		{"apop needs Auth-Pass", headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "110"), apop, Result{}, "did not send password"},
		{"no server", headers(200, "Auth-Status", "OK", "Auth-Port", "143"), plain, Result{}, "did not send server or port"},
		{"no port", headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7"), plain, Result{}, "did not send server or port"},
		{"port 0", headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "0"), plain, Result{}, "invalid server port"},
		{"port 70000", headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "70000"), plain, Result{}, "invalid server port"},
		{"bad server", headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7 ; rm", "Auth-Port", "143"), plain, Result{}, "invalid server address"},
		{"no Auth-Status", headers(200, "Auth-Server", "10.0.0.7"), plain, Result{}, "sent no Auth-Status"},
		{"status 500", headers(500, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "143"), plain, Result{}, "status 500"},
		{"redirect is not followed", headers(302, "Location", "/elsewhere"), plain, Result{}, "status 302"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &HTTP{URL: respond(t, tt.handler), Logger: quietLog()}
			got, err := h.Authenticate(context.Background(), &tt.req)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrUnavailable with %q", err, tt.wantErr)
				}
				for _, sentinel := range []error{ErrNoStatus, ErrNoBackend} {
					if strings.Contains(sentinel.Error(), tt.wantErr) && !errors.Is(err, sentinel) {
						t.Fatalf("err = %v, want it to match %v", err, sentinel)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Fatalf("got %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestHTTPBrokenServices(t *testing.T) {
	req := Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "hunter2", ClientAddr: tcpAddr("127.0.0.1:1")}
	garbage := startRaw(t, "tcp", "127.0.0.1:0", "this is not HTTP\r\n\r\n")
	half := startRaw(t, "tcp", "127.0.0.1:0", "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Ser")
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	silent, _ := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	t.Cleanup(func() { silent.Close() })
	tests := []struct {
		name, url string
	}{
		{"garbage", garbage.ln.Addr().String() + "/"},
		{"truncated", half.ln.Addr().String() + "/"},
		{"connection refused", closedAddr + "/"},
		{"timeout", silent.Addr().String() + "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			var mu sync.Mutex
			h := &HTTP{URL: tt.url, Timeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))}
			start := time.Now()
			_, err := h.Authenticate(context.Background(), &req)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("took %v with a 200ms timeout", took)
			}
			mu.Lock()
			defer mu.Unlock()
			if !strings.Contains(logs.String(), "auth http failed") {
				t.Errorf("no log line says why: %q", logs.String())
			}
			if strings.Contains(logs.String(), "hunter2") {
				t.Errorf("the password is in the log: %q", logs.String())
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A slow service answer for one session does not hold up another.
func TestHTTPSlowRequestDoesNotBlockOthers(t *testing.T) {
	release := make(chan struct{})
	url := respond(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Auth-User") == "slow" {
			<-release
		}
		headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "143")(w, r)
	})
	defer close(release)
	h := &HTTP{URL: url, Logger: quietLog()}
	go h.Authenticate(context.Background(), &Request{Protocol: "imap", Method: MethodPlain, User: "slow", Password: "p"})
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if _, err := h.Authenticate(context.Background(), &Request{Protocol: "imap", Method: MethodPlain, User: "fast", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("fast login took %v behind a slow one", took)
	}
}

// "Auth-Status: WAIT" asks again after Auth-Wait, with the same attempt.
func TestHTTPWaitStatus(t *testing.T) {
	var calls atomic.Int32
	url := respond(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			headers(200, "Auth-Status", "WAIT", "Auth-Wait", "1")(w, r)
			return
		}
		headers(200, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "143")(w, r)
	})
	h := &HTTP{URL: url, Logger: quietLog()}
	start := time.Now()
	res, err := h.Authenticate(context.Background(), &Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p"})
	if err != nil || !res.OK() {
		t.Fatalf("%+v %v", res, err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("asked again after %v, want Auth-Wait's 1s", took)
	}
	if calls.Load() != 2 {
		t.Errorf("%d requests, want 2", calls.Load())
	}
	// The session's context bounds the wait.
	calls.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := h.Authenticate(ctx, &Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline", err)
	}
}

func TestHTTPKeepAlive(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableKeepAlives=%v", disable), func(t *testing.T) {
			svc := startRaw(t, "tcp", "127.0.0.1:0", okResponse)
			h := &HTTP{URL: svc.ln.Addr().String() + "/", DisableKeepAlives: disable, Logger: quietLog()}
			for range 20 {
				if _, err := h.Authenticate(context.Background(), &Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p"}); err != nil {
					t.Fatal(err)
				}
			}
			want := map[bool]int32{false: 1, true: 20}[disable]
			if n := svc.conns.Load(); n != want {
				t.Errorf("%d connections for 20 logins, want %d", n, want)
			}
		})
	}
}

// A login is one request, as from nginx, or two when the connection kept
// from an earlier request closed without an answer: the service may have
// closed it as idle just as the request went out. Never one for every
// connection in the pool, as net/http's Transport sends a GET again on
// each idle connection in turn: a service that drops connections under
// load would see each login many times (up to 11 in the chaos test's
// full form, before the client was our own).
func TestHTTPRetriesOnce(t *testing.T) {
	const pooled = 8
	var hangups atomic.Int32
	var arrived sync.WaitGroup
	arrived.Add(pooled)
	ok := headers(http.StatusOK, "Auth-Status", "OK", "Auth-Server", "10.0.0.7", "Auth-Port", "143")
	url := respond(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Auth-User") == "hangup" {
			hangups.Add(1)
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		arrived.Done()
		arrived.Wait() // the requests come at once, on as many connections
		ok(w, r)
	})
	h := &HTTP{URL: url, Logger: quietLog()}
	defer h.Close()
	login := func(user string) error {
		_, err := h.Authenticate(context.Background(), &Request{Protocol: "imap", Method: MethodPlain, User: user, Password: "p"})
		return err
	}
	var g sync.WaitGroup
	for range pooled {
		g.Go(func() {
			if err := login("alice"); err != nil {
				t.Error(err)
			}
		})
	}
	g.Wait()
	if err := login("hangup"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("login = %v, want ErrUnavailable", err)
	}
	if n := hangups.Load(); n != 2 {
		t.Errorf("one login after %d on kept-alive connections reached the service %d times, want 2", pooled, n)
	}
}

func TestHTTPUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.sock")
	svc := startRaw(t, "unix", path, okResponse)
	h := &HTTP{URL: "unix:" + path + ":/check", Logger: quietLog()}
	res, err := h.Authenticate(context.Background(), &Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p"})
	if err != nil || res.Backend != "10.0.0.7:143" {
		t.Fatalf("%+v %v", res, err)
	}
	if !strings.HasPrefix(svc.last(), "GET /check HTTP/1.1\r\nHost: localhost\r\n") {
		t.Errorf("request %q", svc.last())
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, url, host, socket, err string
	}{
		{in: "http://127.0.0.1:9000/auth", url: "http://127.0.0.1:9000/auth", host: "127.0.0.1"},
		{in: "127.0.0.1:9000/auth", url: "http://127.0.0.1:9000/auth", host: "127.0.0.1"},
		{in: "localhost/cgi-bin/auth.cgi", url: "http://localhost/cgi-bin/auth.cgi", host: "localhost"},
		{in: "auth.example", url: "http://auth.example/", host: "auth.example"},
		{in: "[::1]:9000/a?b=c", url: "http://[::1]:9000/a?b=c", host: "::1"},
		{in: "unix:/run/auth.sock:/auth", url: "http://localhost/auth", host: "localhost", socket: "/run/auth.sock"},
		{in: "unix:/run/auth.sock", url: "http://localhost/", host: "localhost", socket: "/run/auth.sock"},
		{in: "unix:", err: "no socket path"},
		{in: "https://auth.example/", err: "only http://"},
		{in: "127.0.0.1:99999/", err: "invalid port"},
		{in: "/auth", err: "invalid URL"},
		{in: "user:pw@host/", err: `auth_http "http://…@host/": a user or password in the URL is not supported`},
		{in: "http://user:p%zz@host:9000/auth", err: `auth_http "http://…@host:9000/": a user`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTarget(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "p%zz") {
					t.Fatalf("the error %q holds the URL's password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != (target{tt.url, tt.host, tt.socket}) {
				t.Fatalf("got %+v", *got)
			}
		})
	}
}
