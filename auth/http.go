package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// them (HTTP/1.1 keep-alive), and accepts any 2xx status.
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
	client *http.Client
	closed atomic.Bool
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
		return &target{url: "http://localhost" + uri, host: "localhost", socket: sock}, nil
	}
	rest := strings.TrimPrefix(raw, "http://")
	if strings.Contains(rest, "://") {
		return nil, fmt.Errorf("auth_http %q: only http:// is supported", raw)
	}
	hostport, path, _ := strings.Cut(rest, "/")
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

// Check reports whether the URL can be used, so that a configuration with
// a bad auth_http is refused when it loads.
func (h *HTTP) Check() error {
	h.once.Do(h.init)
	return h.err
}

func (h *HTTP) init() {
	h.target, h.err = parseTarget(h.URL)
	if h.err != nil {
		return
	}
	tr := &http.Transport{
		DisableKeepAlives:      h.DisableKeepAlives,
		DisableCompression:     true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: maxResponseHeader,
		Proxy:                  nil,
	}
	if sock := h.target.socket; sock != "" {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		}
	}
	h.client = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Close closes the connections kept open to the service. A request made
// after Close, or still running then, closes its connection when it is
// done: a closed HTTP keeps nothing open.
func (h *HTTP) Close() error {
	h.closed.Store(true)
	h.closeIdle()
	return nil
}

// closeIdle closes the idle connections kept for reuse.
func (h *HTTP) closeIdle() {
	if h.Check() == nil {
		h.client.CloseIdleConnections()
	}
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
			h.logger().Error("auth http failed", "url", h.target.url, "user", req.User, "err", err)
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
	ctx, cancel := context.WithTimeout(ctx, h.timeout())
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, h.target.url, nil)
	if err != nil {
		return nil, false, err
	}
	hreq.Host = h.target.host
	hreq.Header = requestHeader(req, h.Header, h.PassClientCert)
	hreq.Close = h.closed.Load()
	resp, err := h.client.Do(hreq)
	if err != nil {
		return nil, false, err
	}
	io.CopyN(io.Discard, resp.Body, maxResponseBody)
	resp.Body.Close()
	if h.closed.Load() {
		h.closeIdle() // a request that ran across Close
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, false, fmt.Errorf("auth http server returned status %d", resp.StatusCode)
	}
	return parseResponse(resp.Header, req)
}

// Errors of auth_http responses that cannot be used.
var (
	ErrNoStatus  = errors.New("auth http server sent no Auth-Status")
	ErrNoBackend = errors.New("auth http server did not send server or port")
)

// parseResponse reads the decision in the headers of an auth_http
// response to req. wait reports "Auth-Status: WAIT". An error means the
// response cannot be used.
func parseResponse(h http.Header, req *Request) (res *Result, wait bool, err error) {
	status, ok := h["Auth-Status"]
	if !ok || len(status) == 0 {
		return nil, false, ErrNoStatus
	}
	res = &Result{Wait: parseWait(h.Get("Auth-Wait"))}
	switch s := strings.TrimSpace(status[0]); s {
	case "WAIT":
		return res, true, nil
	case "OK":
	case "":
		res.Error, res.SMTPCode = "Authentication failed", strings.TrimSpace(h.Get("Auth-Error-Code"))
		return res, false, nil
	default:
		res.Error, res.SMTPCode = s, strings.TrimSpace(h.Get("Auth-Error-Code"))
		return res, false, nil
	}
	res.User, res.Password = h.Get("Auth-User"), h.Get("Auth-Pass")
	res.Wait = 0
	res.Backend, err = backendAddress(h.Get("Auth-Server"), h.Get("Auth-Port"))
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
