package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailproxy/mailproxy/internal/clock"
)

// DefaultHTTPTimeout is the default auth_http_timeout.
const DefaultHTTPTimeout = 60 * time.Second

// Bounds on what an auth service may send.
const (
	maxResponseHeader = 16 << 10 // bytes of response header
	maxResponseBody   = 64 << 10 // bytes of body read (and ignored) to reuse the connection
	maxWaitRounds     = 10       // "Auth-Status: WAIT" answers in a row
)

// HTTP is an Authenticator that asks an HTTP service, speaking the protocol
// of nginx's ngx_mail_auth_http_module: the login facts go out as request
// headers (Auth-User, Auth-Pass, Client-IP, …), the decision comes back in
// response headers (Auth-Status, Auth-Server, Auth-Port, …). Services
// written for nginx work unchanged.
//
// Unlike nginx, HTTP keeps connections to the service open and reuses
// them (HTTP/1.1 keep-alive), and accepts any 2xx status. Its client is
// its own, made for this one request: a login costs the service one write
// and one read on a kept connection, and the proxy no goroutine.
//
// The fields must not change once HTTP is in use.
type HTTP struct {
	// URL is the service: "http://host:port/path", the same without
	// "http://" (as nginx allows), or "unix:/socket/path:/uri".
	URL string
	// Header lists extra request headers (auth_http_header), in order.
	Header [][2]string
	// PassClientCert sends the client certificate in Auth-SSL-Cert
	// (auth_http_pass_client_cert).
	PassClientCert bool
	// Timeout bounds each request (auth_http_timeout); zero means 60s.
	Timeout time.Duration
	// DisableKeepAlives opens a new connection for every request, as
	// nginx does.
	DisableKeepAlives bool
	// Logger receives a line for every failure of the service. Nil means
	// slog.Default().
	Logger *slog.Logger

	once   sync.Once
	target *target
	err    error
	head   string // the request line and Host header
	extra  string // the Header lines
	pool   *pool
}

var _ Authenticator = (*HTTP)(nil)

// target is a parsed auth_http URL.
type target struct {
	url    string // what the HTTP client requests
	host   string // the Host header
	socket string // unix socket path, or ""
}

// parseTarget reads an auth_http URL as nginx does.
func parseTarget(raw string) (*target, error) {
	if path, ok := strings.CutPrefix(raw, "unix:"); ok {
		sock, uri, _ := strings.Cut(path, ":")
		if sock == "" {
			return nil, fmt.Errorf("auth_http %q: no socket path", raw)
		}
		if uri == "" {
			uri = "/"
		}
		if _, err := url.Parse("http://localhost" + uri); err != nil {
			return nil, fmt.Errorf("auth_http %q: invalid URI", raw)
		}
		return &target{url: "http://localhost" + uri, host: "localhost", socket: sock}, nil
	}
	rest := strings.TrimPrefix(raw, "http://")
	if strings.Contains(rest, "://") {
		return nil, fmt.Errorf("auth_http %q: only http:// is supported", raw)
	}
	hostport, path, _ := strings.Cut(rest, "/")
	if _, host, ok := strings.Cut(hostport, "@"); ok { // not quoted: the rest may be a password
		return nil, fmt.Errorf("auth_http \"http://…@%s/\": a user or password in the URL is not supported", host)
	}
	u, err := url.Parse("http://" + hostport + "/" + path)
	if err != nil || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("auth_http %q: invalid URL", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("auth_http %q: invalid port", raw)
		}
	}
	return &target{url: u.String(), host: u.Hostname()}, nil
}

// Check reports whether the URL and the extra headers can be used, so that
// a configuration with a bad auth_http is refused when it loads.
func (h *HTTP) Check() error {
	h.once.Do(h.init)
	return h.err
}

func (h *HTTP) init() {
	h.target, h.err = parseTarget(h.URL)
	if h.err != nil {
		return
	}
	u, err := url.Parse(h.target.url)
	if err != nil { // cannot happen: parseTarget parsed it
		h.err = err
		return
	}
	h.head = "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + h.target.host + "\r\n"
	if h.extra, h.err = extraHeaders(h.Header); h.err != nil {
		return
	}
	if sock := h.target.socket; sock != "" {
		h.pool = newPool("unix", sock)
		return
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	h.pool = newPool("tcp", net.JoinHostPort(u.Hostname(), port))
}

// Close closes the connections kept open to the service. A request made
// after Close, or still running then, closes its connection when it is
// done: a closed HTTP keeps nothing open.
func (h *HTTP) Close() error {
	if h.Check() == nil {
		h.pool.close()
	}
	return nil
}

func (h *HTTP) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
}

func (h *HTTP) timeout() time.Duration {
	if h.Timeout <= 0 {
		return DefaultHTTPTimeout
	}
	return h.Timeout
}

// Authenticate asks the service about req. A refused login is a Result
// with Error set; an unreachable, slow or confused service is an error
// wrapping ErrUnavailable, and the reason is logged.
func (h *HTTP) Authenticate(ctx context.Context, req *Request) (*Result, error) {
	if err := h.Check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for range maxWaitRounds {
		res, wait, err := h.ask(ctx, req)
		if err != nil {
			h.logger().Error("auth http failed", "url", h.target.url, "user", req.User, "err", Redact(err.Error(), req.User, req.Password))
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if !wait {
			return res, nil
		}
		if err := clock.Sleep(ctx, res.Wait); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: auth http server said WAIT %d times", ErrUnavailable, maxWaitRounds)
}

// ask makes one request. wait reports "Auth-Status: WAIT": ask again after
// res.Wait.
func (h *HTTP) ask(ctx context.Context, req *Request) (res *Result, wait bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, &url.Error{Op: "Get", URL: h.target.url, Err: err}
	}
	x := getCall()
	defer putCall(x)
	keepAlive := !h.DisableKeepAlives && !h.pool.closed.Load()
	x.req = h.appendRequest(x.req[:0], req, keepAlive)
	x.slack = h.timeout() / 64
	deadline := time.Now().Add(h.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := h.pool.roundTrip(ctx, x, deadline, keepAlive); err != nil {
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case isTimeout(err):
			err = context.DeadlineExceeded
		}
		return nil, false, &url.Error{Op: "Get", URL: h.target.url, Err: err}
	}
	if code := x.resp.code; code < 200 || code > 299 {
		return nil, false, fmt.Errorf("auth http server returned status %d", code)
	}
	return parseResponse(&x.resp, req)
}

// Errors of auth_http responses that cannot be used.
var (
	ErrNoStatus  = errors.New("auth http server sent no Auth-Status")
	ErrNoBackend = errors.New("auth http server did not send server or port")
)

// parseResponse reads the decision in the headers of an auth_http
// response to req. wait reports "Auth-Status: WAIT". An error means the
// response cannot be used.
func parseResponse(h *response, req *Request) (res *Result, wait bool, err error) {
	if !h.has[hStatus] {
		return nil, false, ErrNoStatus
	}
	res = &Result{Wait: parseWait(h.get(hWait))}
	switch s := strings.TrimSpace(h.get(hStatus)); s {
	case "WAIT":
		return res, true, nil
	case "OK":
	case "":
		res.Error, res.SMTPCode = "Authentication failed", strings.TrimSpace(h.get(hErrorCode))
		return res, false, nil
	default:
		res.Error, res.SMTPCode = s, strings.TrimSpace(h.get(hErrorCode))
		return res, false, nil
	}
	res.User, res.Password = h.get(hUser), h.get(hPass)
	res.Wait = 0
	res.Backend, err = backendAddress(h.get(hServer), h.get(hPort))
	if err != nil {
		return nil, false, err
	}
	if _, _, err := res.BackendLogin(req); err != nil {
		return nil, false, fmt.Errorf("auth http server did not send password for method %s", req.Method)
	}
	return res, false, nil
}

// parseWait reads Auth-Wait: whole seconds; anything else is no wait, as
// in nginx.
func parseWait(v string) time.Duration {
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
	if err != nil {
		return 0
	}
	return time.Duration(n) * time.Second
}

// backendAddress joins Auth-Server and Auth-Port, checking both. The
// server may be an IP address or a host name.
func backendAddress(server, port string) (string, error) {
	server, port = strings.TrimSpace(server), strings.TrimSpace(port)
	if server == "" || port == "" {
		return "", ErrNoBackend
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strings.HasPrefix(port, "+") {
		return "", fmt.Errorf("auth http server sent invalid server port %q", port)
	}
	server = strings.TrimSuffix(strings.TrimPrefix(server, "["), "]")
	if net.ParseIP(server) == nil && !validHostName(server) {
		return "", fmt.Errorf("auth http server sent invalid server address %q", server)
	}
	return net.JoinHostPort(server, strconv.Itoa(n)), nil
}

// validHostName reports whether s is a DNS host name (letters, digits,
// hyphens and dots, 253 bytes at most).
func validHostName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
