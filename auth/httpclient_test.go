package auth

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scriptService is an auth service on a real socket that runs serve for
// each connection it accepts, for responses no real server sends.
type scriptService struct {
	ln    net.Listener
	conns atomic.Int32 // connections accepted
}

func startScript(tb testing.TB, serve func(c net.Conn, r *bufio.Reader)) *scriptService {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &scriptService{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return s
}

func (s *scriptService) url() string { return s.ln.Addr().String() + "/auth" }

// readRequest reads a request's head from r and drops it.
func readRequest(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 && (line[0] == '\n' || line[0] == '\r') {
			return nil
		}
	}
}

// answerAll answers every request of a connection with response.
func answerAll(response string) func(c net.Conn, r *bufio.Reader) {
	b := []byte(response)
	return func(c net.Conn, r *bufio.Reader) {
		for readRequest(r) == nil {
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}
}

// BenchmarkHTTPAuthenticate measures a login through auth_http against a
// local service that allocates nothing per request, so that the figures
// are the client's: with connections kept alive, the same from parallel
// sessions, and with a new connection per request (as nginx does).
func BenchmarkHTTPAuthenticate(b *testing.B) {
	svc := startScript(b, answerAll(okResponse))
	ctx, cancel := context.WithCancel(context.Background()) // a session's context can end
	defer cancel()
	req := &Request{Protocol: "imap", Method: MethodPlain, User: "user12", Password: "secret", Attempt: 1,
		ClientAddr: tcpAddr("127.0.0.1:40000"), LocalAddr: tcpAddr("127.0.0.1:143")}
	for _, bench := range []struct {
		name              string
		disableKeepAlives bool
		parallel          bool
	}{
		{"keepalive", false, false},
		{"keepalive-parallel", false, true},
		{"newconn", true, false},
	} {
		b.Run(bench.name, func(b *testing.B) {
			h := &HTTP{URL: svc.url(), DisableKeepAlives: bench.disableKeepAlives, Logger: quietLog()}
			defer h.Close()
			b.ReportAllocs()
			if bench.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := h.Authenticate(ctx, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
				return
			}
			for b.Loop() {
				if _, err := h.Authenticate(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// okHead is a successful response's head without its end.
const okHead = "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\n"

// answerOnce answers the first request of a connection with response,
// then closes it.
func answerOnce(response string) func(c net.Conn, r *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		if readRequest(r) == nil {
			c.Write([]byte(response))
		}
	}
}

// answerThenDrop answers the first request of a connection and closes it
// when the next one comes, with a reset when reset is set.
func answerThenDrop(reset bool) func(c net.Conn, r *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		if readRequest(r) != nil {
			return
		}
		c.Write([]byte(okResponse))
		if readRequest(r) == nil && reset {
			c.(*net.TCPConn).SetLinger(0)
		}
	}
}

// answerSlowly sends response a byte at a time, every 50ms.
func answerSlowly(response string) func(c net.Conn, r *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		if readRequest(r) != nil {
			return
		}
		for i := range len(response) {
			if _, err := c.Write([]byte{response[i]}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// answerAndHold answers the first request with response and keeps the
// connection open, reading nothing more, until the client closes it.
func answerAndHold(response string) func(c net.Conn, r *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		if readRequest(r) == nil {
			c.Write([]byte(response))
			io.Copy(io.Discard, r)
		}
	}
}

// Odd and hostile answers give the result they gave when the client was
// net/http's: a login, or ErrUnavailable. conns, when not 0, is how many
// connections the logins took: one when the connection could be kept.
func TestHTTPOddResponses(t *testing.T) {
	ok := okHead + "Content-Length: 0\r\n\r\n"
	tests := []struct {
		name    string
		serve   func(c net.Conn, r *bufio.Reader)
		wantErr string // "" for a login; else a part of the error
		conns   int32
	}{
		{"body with Content-Length", answerAll(okHead + "Content-Length: 5\r\n\r\nhello"), "", 1},
		{"same Content-Length twice", answerAll(okHead + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), "", 1},
		{"chunked body", answerAll(okHead + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "", 1},
		{"chunked with extension and trailer", answerAll(okHead + "Transfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"), "", 1},
		{"204 with a Content-Length and no body", answerAll("HTTP/1.1 204 No Content\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\nContent-Length: 5\r\n\r\n"), "", 1},
		{"HTTP/1.0 keep-alive", answerAll("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\nContent-Length: 2\r\n\r\nok"), "", 1},
		{"1xx before the answer", answerAll("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok), "", 1},
		{"status line without reason", answerAll("HTTP/1.1 200\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\nContent-Length: 0\r\n\r\n"), "", 1},
		{"lower-case names, bare LF, folded line", answerAll("HTTP/1.1 200 OK\nauth-status: OK\nAUTH-SERVER:10.0.0.7  \nauth-port:\n 143\ncontent-length: 0\n\n"), "", 1},
		{"many small headers", answerAll(okHead + strings.Repeat("X-A: b\r\n", 1500) + "Content-Length: 0\r\n\r\n"), "", 1},
		{"Connection: close", answerOnce(okHead + "Connection: close\r\nContent-Length: 0\r\n\r\n"), "", 3},
		{"HTTP/1.0 without length", answerOnce("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\n\r\nthe body"), "", 3},
		{"HTTP/1.0 with chunked (ignored)", answerOnce("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\n\r\nthe body"), "", 3},
		{"HTTP/1.1 without length", answerOnce(okHead + "\r\nthe body"), "", 3},
		{"HTTP/1.1 without length, connection held", answerAndHold(okHead + "\r\nthe body"), "", 3},
		{"body over the limit", answerAll(okHead + "Content-Length: 100000\r\n\r\n" + strings.Repeat("x", 100000)), "", 3},
		{"body never sent", answerAndHold(okHead + "Content-Length: 10\r\n\r\nabc"), "", 3},
		{"closes idle connections", answerOnce(ok), "", 3},
		{"408 on an idle connection", answerOnce(ok + "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), "", 3},
		{"closes when the next request comes", answerThenDrop(false), "", 3},
		{"resets when the next request comes", answerThenDrop(true), "", 3},
		{"unsolicited bytes after the answer", answerAll(ok + "HTTP/1.1 200 OK\r\n\r\n"), "", 0},
		{"status 500 with a body", answerAll("HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops"), "status 500", 1},
		{"101 Switching Protocols", answerAndHold("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"), "status 101", 0},
		{"space before a colon", answerAll("HTTP/1.1 200 OK\r\nAuth-Status : OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\nContent-Length: 0\r\n\r\n"), "no Auth-Status", 0},
		{"garbage", answerAll("this is not HTTP\r\n\r\n"), "malformed", 0},
		{"four-digit status", answerAll("HTTP/1.1 2000 OK\r\n\r\n"), "malformed", 0},
		{"bad version", answerAll("HTTP/2 200 OK\r\n\r\n"), "malformed", 0},
		{"header line without colon", answerAll(okHead + "Content-Length 0\r\n\r\n"), "malformed", 0},
		{"invalid header name", answerAll(okHead + "Auth/Status: OK\r\n\r\n"), "malformed", 0},
		{"control character in a value", answerAll(okHead + "X-A: a\x01b\r\n\r\n"), "malformed", 0},
		{"header over 16 KiB", answerAll(okHead + "X-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n"), "", -1},
		{"headers over 16 KiB", answerAll(okHead + strings.Repeat("X-A: b\r\n", 3000) + "\r\n"), "", -1},
		{"bad Content-Length", answerAll(okHead + "Content-Length: -1\r\n\r\n"), "Content-Length", 0},
		{"empty Content-Length", answerAll(okHead + "Content-Length: \r\n\r\n"), "Content-Length", 0},
		{"two Content-Lengths", answerAll(okHead + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nx"), "Content-Length", 0},
		{"Transfer-Encoding gzip", answerAll(okHead + "Transfer-Encoding: gzip\r\n\r\n"), "transfer encoding", 0},
		{"two Transfer-Encodings", answerAll(okHead + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "transfer encoding", 0},
		{"truncated", answerOnce(okHead + "Content-Le"), "", -1},
		{"closed without an answer", answerOnce(""), "", -1},
		{"slow answer", answerSlowly(ok), "", -1},
	}
	req := Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p", ClientAddr: tcpAddr("127.0.0.1:1")}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := startScript(t, tt.serve)
			h := &HTTP{URL: svc.url(), Timeout: 300 * time.Millisecond, Logger: quietLog()}
			defer h.Close()
			for i := range 3 {
				res, err := h.Authenticate(context.Background(), &req)
				switch {
				case tt.wantErr == "" && tt.conns >= 0:
					if err != nil || res.Backend != "10.0.0.7:143" {
						t.Fatalf("login %d: %+v, %v", i+1, res, err)
					}
				case !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.wantErr):
					t.Fatalf("login %d: err = %v, want ErrUnavailable with %q", i+1, err, tt.wantErr)
				}
			}
			if n := svc.conns.Load(); tt.conns > 0 && n != tt.conns {
				t.Errorf("%d connections for 3 logins, want %d", n, tt.conns)
			}
		})
	}
}

// A time-out and a session that ends both stop a request at once, with
// their errors.
func TestHTTPTimeoutAndCancel(t *testing.T) {
	silent := startScript(t, answerAndHold(""))
	req := Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p"}
	h := &HTTP{URL: silent.url(), Timeout: 200 * time.Millisecond, Logger: quietLog()}
	start := time.Now()
	if _, err := h.Authenticate(context.Background(), &req); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("took %v with a 200ms timeout", took)
	}
	h.Timeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if _, err := h.Authenticate(ctx, &req); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want ErrUnavailable and Canceled", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v to notice the end of the session", took)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := h.Authenticate(ctx, &req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the session's DeadlineExceeded", err)
	}
}

// A response cut short on a kept connection is an error: it is not sent
// again, since the service may have acted on it.
func TestHTTPNoRetryAfterAnswerBegan(t *testing.T) {
	svc := startScript(t, func(c net.Conn, r *bufio.Reader) {
		if readRequest(r) == nil {
			c.Write([]byte(okResponse))
		}
		if readRequest(r) == nil {
			c.Write([]byte(okHead))
		}
	})
	h := &HTTP{URL: svc.url(), Logger: quietLog()}
	defer h.Close()
	req := Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p"}
	if _, err := h.Authenticate(context.Background(), &req); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Authenticate(context.Background(), &req); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if n := svc.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (no retry)", n)
	}
}

// The request is nginx's, byte for byte, headers in nginx's order (then
// Connection, which nginx's HTTP/1.0 does without).
func TestHTTPRequestWire(t *testing.T) {
	svc := startRaw(t, "tcp", "127.0.0.1:0", strings.Replace(okResponse, "\r\n\r\n", "\r\nAuth-Pass: pw\r\n\r\n", 1))
	tls := &TLSInfo{Protocol: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", Verify: "SUCCESS", Subject: "CN=a", Issuer: "CN=ca",
		Serial: "01", Fingerprint: "ab", Certificate: "-----BEGIN CERTIFICATE-----\nMII=\n"}
	proxy := &ProxyInfo{Source: tcpAddr("[2001:db8::1]:4000"), Destination: tcpAddr("198.51.100.1:993")}
	tests := []struct {
		name string
		h    *HTTP
		req  Request
		want string
	}{
		{"imap plain, kept alive", &HTTP{URL: svc.ln.Addr().String() + "/mail/auth?x=1"},
			Request{Protocol: "imap", Method: MethodPlain, User: "alice smith", Password: "pw", Attempt: 2, ClientAddr: tcpAddr("[::ffff:192.0.2.42]:51000")},
			"GET /mail/auth?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n" +
				"Auth-Method: plain\r\nAuth-User: alice%20smith\r\nAuth-Pass: pw\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 2\r\n" +
				"Client-IP: 192.0.2.42\r\n\r\n"},
		{"everything, a new connection each", &HTTP{URL: "http://" + svc.ln.Addr().String(), DisableKeepAlives: true, PassClientCert: true,
			Header: [][2]string{{"X-Auth-Key", " k e y\t"}, {"X-Second", ""}}},
			Request{Protocol: "pop3", Method: MethodAPOP, User: "bob", Password: "0123456789abcdef0123456789abcdef", Salt: "<1.2@mx>",
				ClientAddr: tcpAddr("192.0.2.42:51000"), ClientHost: "client.example", TLS: tls, Proxy: proxy},
			"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
				"Auth-Method: apop\r\nAuth-User: bob\r\nAuth-Pass: 0123456789abcdef0123456789abcdef\r\nAuth-Salt: <1.2@mx>\r\n" +
				"Auth-Protocol: pop3\r\nAuth-Login-Attempt: 1\r\nClient-IP: 192.0.2.42\r\nClient-Host: client.example\r\n" +
				"Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv1.3\r\nAuth-SSL-Cipher: TLS_AES_128_GCM_SHA256\r\nAuth-SSL-Verify: SUCCESS\r\n" +
				"Auth-SSL-Subject: CN=a\r\nAuth-SSL-Issuer: CN=ca\r\nAuth-SSL-Serial: 01\r\nAuth-SSL-Fingerprint: ab\r\n" +
				"Auth-SSL-Cert: -----BEGIN%20CERTIFICATE-----%0AMII=%0A\r\n" +
				"Proxy-Protocol-Addr: 2001:db8::1\r\nProxy-Protocol-Port: 4000\r\n" +
				"Proxy-Protocol-Server-Addr: 198.51.100.1\r\nProxy-Protocol-Server-Port: 993\r\n" +
				"X-Auth-Key: k e y\r\nX-Second: \r\n\r\n"},
		{"smtp none, values trimmed and escaped", &HTTP{URL: svc.ln.Addr().String() + "/"},
			Request{Protocol: "smtp", Method: MethodNone, SMTPHelo: " helo\t", SMTPFrom: "MAIL FROM:<a@b>", SMTPTo: []string{"RCPT TO:<c@d>", "RCPT TO:<e@f>\r\nX: y"},
				ClientAddr: tcpAddr("[2001:db8::7]:25")},
			"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n" +
				"Auth-Method: none\r\nAuth-User: \r\nAuth-Pass: \r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\nClient-IP: 2001:db8::7\r\n" +
				"Auth-SMTP-Helo: helo%09\r\nAuth-SMTP-From: MAIL FROM:<a@b>\r\nAuth-SMTP-To: RCPT TO:<c@d>\r\nAuth-SMTP-To: RCPT TO:<e@f>%0D%0AX: y\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			h.Logger = quietLog()
			defer h.Close()
			if _, err := h.Authenticate(context.Background(), &tt.req); err != nil {
				t.Fatal(err)
			}
			if got := svc.last(); got != tt.want {
				t.Errorf("request\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// Client-IP is written as net.IP writes it.
func TestAppendIP(t *testing.T) {
	for _, a := range []string{"192.0.2.1:1", "[::ffff:192.0.2.1]:1", "[2001:db8::1]:1", "[::1]:1", "[::]:1", "[fe80::1%eth0]:1", "[2001:db8:0:0:1:0:0:1]:1"} {
		addr := tcpAddr(a)
		if got, want := string(appendIP(nil, addr)), addr.IP.String(); got != want {
			t.Errorf("%s: %q, want %q", a, got, want)
		}
	}
	if got := string(appendIP(nil, &net.UnixAddr{Name: "/run/s", Net: "unix"})); got != "unix:" {
		t.Errorf("unix peer: %q", got)
	}
}

// An auth_http_header that cannot be sent is refused by Check.
func TestHTTPCheckHeaders(t *testing.T) {
	for _, tt := range []struct {
		header [2]string
		err    string
	}{
		{[2]string{"X-Key", "a\tb"}, ""},
		{[2]string{"X-Key", "naïve"}, ""},
		{[2]string{"", "v"}, "invalid name"},
		{[2]string{"X Key", "v"}, "invalid name"},
		{[2]string{"X-Kéy", "v"}, "invalid name"},
		{[2]string{"X-Key", "a\r\nAuth-Status: OK"}, "control character"},
		{[2]string{"X-Key", "a\x00"}, "control character"},
	} {
		h := &HTTP{URL: "127.0.0.1:1/", Header: [][2]string{tt.header}}
		err := h.Check()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%q: %v, want %q", tt.header, err, tt.err)
		}
	}
}

// trackedService is an auth service that answers every request, holding
// each answer until release lets it go, and reports the connections the
// client closes.
type trackedService struct {
	*scriptService
	arrived chan string   // the client address of each request, as it comes
	release chan struct{} // an answer may go
	closed  chan string   // the client address of each connection it closed
}

func startTracked(t *testing.T) *trackedService {
	s := &trackedService{arrived: make(chan string, 100), release: make(chan struct{}, 100), closed: make(chan string, 100)}
	s.scriptService = startScript(t, func(c net.Conn, r *bufio.Reader) {
		peer := c.RemoteAddr().String()
		for readRequest(r) == nil {
			s.arrived <- peer
			select {
			case <-s.release:
			case <-time.After(5 * time.Second):
				return
			}
			if _, err := c.Write([]byte(okResponse)); err != nil {
				return
			}
		}
		s.closed <- peer
	})
	return s
}

// waitClosed waits for n connections to be closed by the client and
// returns their addresses.
func (s *trackedService) waitClosed(t *testing.T, n int) []string {
	t.Helper()
	var peers []string
	for range n {
		select {
		case p := <-s.closed:
			peers = append(peers, p)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d connections closed, want %d", len(peers), n)
		}
	}
	return peers
}

// idlePeers lists the pool's idle connections by local address, the most
// recently used last.
func idlePeers(h *HTTP) []string {
	h.pool.mu.Lock()
	defer h.pool.mu.Unlock()
	var peers []string
	for _, c := range h.pool.idle {
		peers = append(peers, c.LocalAddr().String())
	}
	return peers
}

// The pool keeps maxIdle connections, hands out the one used last, closes
// one idle for idleTimeout, and closes them all on Close; a request that
// runs across Close closes its connection when it ends.
func TestHTTPPool(t *testing.T) {
	svc := startTracked(t)
	h := &HTTP{URL: svc.url(), Logger: quietLog()}
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	h.pool.maxIdle = 2
	req := Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p"}
	login := func() chan error {
		done := make(chan error, 1)
		go func() {
			_, err := h.Authenticate(context.Background(), &req)
			done <- err
		}()
		return done
	}
	// Three logins at once take three connections, of which two are kept.
	var logins []chan error
	for range 3 {
		logins = append(logins, login())
		<-svc.arrived
	}
	for _, done := range logins {
		svc.release <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	svc.waitClosed(t, 1)
	idle := idlePeers(h)
	if len(idle) != 2 {
		t.Fatalf("%d idle connections, want 2", len(idle))
	}
	// The next login takes the connection kept last.
	done := login()
	if peer := <-svc.arrived; peer != idle[1] {
		t.Errorf("login on %s, want the last kept %s", peer, idle[1])
	}
	svc.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Idle connections expire.
	h.pool.mu.Lock()
	h.pool.idleTimeout = 20 * time.Millisecond
	h.pool.sweep.Reset(0)
	h.pool.mu.Unlock()
	svc.waitClosed(t, 2)
	if n := len(idlePeers(h)); n != 0 {
		t.Errorf("%d idle connections after they expired", n)
	}
	h.pool.mu.Lock()
	h.pool.idleTimeout = time.Minute
	h.pool.mu.Unlock()
	// Close closes the idle ones.
	svc.release <- struct{}{}
	if _, err := h.Authenticate(context.Background(), &req); err != nil {
		t.Fatal(err)
	}
	<-svc.arrived
	h.Close()
	svc.waitClosed(t, 1)
	// A login that runs across Close closes its connection when it ends,
	// and so does a login after Close.
	h = &HTTP{URL: svc.url(), Logger: quietLog()}
	done = login()
	<-svc.arrived
	h.Close()
	svc.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	svc.waitClosed(t, 1)
	svc.release <- struct{}{}
	if _, err := h.Authenticate(context.Background(), &req); err != nil {
		t.Fatal(err)
	}
	<-svc.arrived
	svc.waitClosed(t, 1)
	if n := len(idlePeers(h)); n != 0 {
		t.Errorf("%d idle connections after Close", n)
	}
}
