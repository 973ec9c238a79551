package smtp

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/engine"
)

// Bounds on what a backend may send before the session is relayed.
const (
	maxReplyLines   = 100
	unavailableName = "[UNAVAILABLE]"
)

var errBackendRefused = errors.New("smtp: backend refused")

// backend is the SMTP backend while the proxy prepares the session.
type backend struct {
	conn net.Conn
	r    *bufio.Reader
}

// reply is a backend reply: its code and its lines.
type reply struct {
	code  int
	lines []string
}

// last returns the reply's last line, as a one-line reply to pass on, or
// "" when nothing was read.
func (r reply) last() string {
	if len(r.lines) == 0 {
		return ""
	}
	return r.lines[len(r.lines)-1]
}

// proxy prepares the backend session (greeting, EHLO, XCLIENT, AUTH, the
// replayed MAIL and RCPT), answers the client, and relays.
func (cl *client) proxy(login *engine.Login, req *auth.Request, replay []string) bool {
	reply, err := cl.c.ProxyVia(cl.ctx, login.Backend, func(conn net.Conn, r *bufio.Reader) ([]string, error) {
		be := &backend{conn: conn, r: r}
		answer, err := be.prepare(cl, login, req, replay)
		return []string{answer.last()}, err
	})
	if err != nil {
		return cl.backendFailed(reply, login, err)
	}
	return false
}

// backendFailed answers a backend that failed before relaying: its own
// reply with proxy_pass_error_message, else a generic one.
func (cl *client) backendFailed(reply string, login *engine.Login, err error) bool {
	cl.c.BackendFailed("backend session failed", login, err)
	code, _ := replyCode(reply)
	switch {
	case errors.Is(err, errBackendRefused) && cl.st.PassErrorMessage:
		return cl.c.Fail(auth.Redact(reply, login.User, login.Password))
	case errors.Is(err, errBackendRefused) && code >= 500:
		return cl.c.Fail("535 5.7.8 Authentication failed")
	}
	return cl.c.Fail("451 4.3.0 Backend unavailable")
}

// prepare runs the backend dialogue up to the point where the client's
// session goes on there. It returns the reply for the client: "235 2.0.0
// OK" after AUTH, the backend's reply to the replayed RCPT with smtp_auth
// none.
func (be *backend) prepare(cl *client, login *engine.Login, req *auth.Request, replay []string) (reply, error) {
	if r, err := be.expect(220); err != nil {
		return r, fmt.Errorf("greeting: %v", err) // a refused greeting is an unavailable backend
	}
	if err := be.hello(cl, login, req); err != nil {
		return reply{}, err
	}
	if cl.backendLogin(req) {
		if r, err := be.authenticate(login); err != nil {
			return r, err
		}
	}
	if len(replay) == 0 {
		return reply{code: 235, lines: []string{"235 2.0.0 OK"}}, nil
	}
	if r, err := be.command(replay[0], 250); err != nil {
		return r, err
	}
	r, err := be.command(replay[1], 0)
	return r, err
}

// hello introduces the session. With XCLIENT (the default) the proxy
// says EHLO as itself, passes the client's address and name, then repeats
// the client's HELO or EHLO; after a client that said neither nothing is
// repeated, as in nginx, except before AUTH (proxy_smtp_auth), which
// follows an EHLO of the proxy's. Without XCLIENT the backend gets the
// client's HELO or EHLO, or the proxy's name when the client gave none.
// Before AUTH, HELO becomes EHLO.
func (be *backend) hello(cl *client, login *engine.Login, req *auth.Request) error {
	helo, verb := cmp.Or(cl.helo, cl.st.ServerName), "HELO"
	if cl.ehlo || cl.backendLogin(req) {
		verb = "EHLO"
	}
	if cl.st.xclient {
		r, err := be.command("EHLO "+cl.st.ServerName, 250)
		if err != nil {
			return err
		}
		if !r.has("XCLIENT") {
			return nil // the backend has no XCLIENT: it stays introduced as the proxy
		}
		if _, err := be.command(xclientCommand(cl, login, req), 220); err != nil {
			return err
		}
		if cl.helo == "" && !cl.backendLogin(req) {
			return nil
		}
	}
	_, err := be.command(verb+" "+helo, 250)
	return err
}

// backendLogin reports whether the proxy logs in to the backend with AUTH
// (proxy_smtp_auth, after a client's AUTH; not with smtp_auth none).
func (cl *client) backendLogin(req *auth.Request) bool {
	return cl.st.backendAuth && req.Method != auth.MethodNone
}

// xclientCommand passes the client's facts on (Postfix XCLIENT_README):
// its address, its login unless proxy_smtp_auth logs in, its name, and
// its HELO.
func xclientCommand(cl *client, login *engine.Login, req *auth.Request) string {
	addr := "[UNAVAILABLE]"
	if host, _, err := net.SplitHostPort(cl.c.RemoteAddr().String()); err == nil {
		addr = host
		if strings.Contains(host, ":") {
			addr = "IPV6:" + host
		}
	}
	name := req.ClientHost
	if name == "" {
		name = unavailableName
	}
	cmd := "XCLIENT ADDR=" + xtext(addr)
	if req.Method != auth.MethodNone && !cl.st.backendAuth {
		// With proxy_smtp_auth the backend learns the login from AUTH,
		// which it refuses once XCLIENT has logged the session in.
		cmd += " LOGIN=" + xtext(login.User)
	}
	cmd += " NAME=" + xtext(name)
	if cl.helo != "" {
		cmd += " HELO=" + xtext(cl.helo)
	}
	return cmd
}

// authenticate logs in with AUTH PLAIN (proxy_smtp_auth), with go-sasl's
// client building the response.
func (be *backend) authenticate(login *engine.Login) (reply, error) {
	_, ir, err := sasl.NewPlainClient("", login.User, login.Password).Start()
	if err != nil {
		return reply{}, err
	}
	return be.command("AUTH PLAIN "+base64.StdEncoding.EncodeToString(ir), 235)
}

// command sends a line and reads the reply; want is the expected code,
// or 0 to take any reply.
func (be *backend) command(line string, want int) (reply, error) {
	if strings.ContainsAny(line, "\r\n") {
		return reply{}, errors.New("line break in a backend command")
	}
	if _, err := fmt.Fprintf(be.conn, "%s\r\n", line); err != nil {
		return reply{}, fmt.Errorf("backend: %w", err)
	}
	return be.expect(want)
}

// expect reads a reply, multi-line ones included, and checks its code.
func (be *backend) expect(want int) (reply, error) {
	var r reply
	for range maxReplyLines {
		raw, err := be.r.ReadSlice('\n')
		if err != nil {
			return r, fmt.Errorf("backend: %w", err)
		}
		line := strings.TrimRight(string(raw), "\r\n")
		code, ok := replyCode(line)
		if !ok {
			return r, fmt.Errorf("backend sent %q", line)
		}
		r.code, r.lines = code, append(r.lines, line)
		if len(line) == 3 || line[3] != '-' {
			if want != 0 && code != want {
				return r, fmt.Errorf("%w: %q", errBackendRefused, line)
			}
			return r, nil
		}
	}
	return r, errors.New("backend reply too long")
}

// replyCode reads the three digits that start a reply line, followed by
// nothing, a space or a hyphen.
func replyCode(line string) (int, bool) {
	if len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
		return 0, false
	}
	code := 0
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, true
}

// has reports whether an EHLO reply lists the extension.
func (r reply) has(ext string) bool {
	for _, l := range r.lines[1:] {
		if f := strings.Fields(l[min(4, len(l)):]); len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}
