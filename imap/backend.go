package imap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/engine"
)

// Bounds on what a backend may send before the login completes.
const (
	maxBackendLine  = 64 << 10
	maxBackendLines = 1000
)

// Backend command tags; the client's own tag is put back on the reply.
const (
	idTag    = "mp1"
	loginTag = "mp2"
)

var errBackendRefused = errors.New("imap: backend refused the login")

// backend is the IMAP backend while the proxy logs in there.
type backend struct {
	conn net.Conn
	r    *bufio.Reader
	out  []byte   // the command being written, sent by flush
	caps []string // from the greeting, upper case
	// idPending: ID went in LOGIN's write, and its answer comes first.
	idPending bool
}

// proxy logs in to the backend for login and hands the session to the
// relay. The client gets the backend's answer to LOGIN under its own tag:
// the untagged data (such as the capabilities after login) and the tagged
// reply with its response code. It reports whether the dialogue goes on
// (after a failed backend login the client may try again).
func (cl *client) proxy(tag string, login *engine.Login) bool {
	reply, err := cl.c.ProxyVia(cl.ctx, login.Backend, func(conn net.Conn, r *bufio.Reader) ([]string, error) {
		be := &backend{conn: conn, r: r}
		untagged, reply, err := be.login(cl, login)
		if err != nil {
			return []string{reply}, err // the untagged data of a refusal is not passed on
		}
		return append(untagged, tag+" "+reply), nil
	})
	if err != nil {
		return cl.backendFailed(tag, reply, login, err)
	}
	return false
}

// backendFailed answers a failed backend login: with proxy_pass_error_message
// the backend's own words, else a generic message.
func (cl *client) backendFailed(tag, reply string, login *engine.Login, err error) bool {
	cl.c.BackendFailed("backend login failed", login, err)
	switch {
	case errors.Is(err, errBackendRefused) && cl.st.PassErrorMessage:
		cl.c.Reply("%s %s", tag, auth.Redact(reply, login.User, login.Password))
	case errors.Is(err, errBackendRefused):
		cl.c.Reply("%s NO [AUTHENTICATIONFAILED] Authentication failed", tag)
	default:
		cl.c.Reply("%s NO [UNAVAILABLE] Backend unavailable", tag)
	}
	return cl.c.Failed()
}

// login reads the greeting, passes the client's ID on, and logs in. It
// returns the backend's answer to LOGIN: the untagged lines it sent before
// the tagged reply, and the text of that reply ("OK …", or "NO …" with
// errBackendRefused). The answer to ID is the proxy's own and is dropped.
func (be *backend) login(cl *client, login *engine.Login) (untagged []string, reply string, err error) {
	greeting, err := be.line()
	if err != nil {
		return nil, "", err
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return nil, "", fmt.Errorf("backend greeting %q", truncate(greeting))
	}
	be.caps = greetingCapabilities(greeting)
	loginArgs := []arg{{text: loginTag + " LOGIN "}, astring(login.User), {text: " "}, astring(login.Password)}
	if be.has("ID") {
		if err := be.sendID(cl, be.waitsForContinuation(loginArgs)); err != nil {
			return nil, "", err
		}
	}
	if err := be.send(loginArgs); err != nil {
		return nil, "", err
	}
	if be.idPending {
		if _, _, err := be.await(idTag); err != nil {
			return nil, "", err
		}
	}
	untagged, reply, err = be.await(loginTag)
	switch {
	case err != nil:
		return nil, "", err
	case strings.HasPrefix(reply, "OK"):
		return untagged, reply, nil
	case strings.HasPrefix(reply, "NO"):
		return nil, reply, errBackendRefused
	}
	return nil, "", fmt.Errorf("backend answered LOGIN with %q", truncate(reply))
}

// arg is a piece of a backend command: text as it is, or a string that
// goes as a literal.
type arg struct {
	text    string
	literal bool
}

// sendID queues the ID command that passes the client's ID on, to go in
// the same write as LOGIN: one round trip instead of two, its answer read
// before LOGIN's. When LOGIN must wait for a continuation request, ID is
// sent and answered first. The answer to ID is the proxy's own and is
// dropped.
func (be *backend) sendID(cl *client, alone bool) error {
	be.out = append(be.out, idTag+" "+idCommand(cl)+"\r\n"...)
	if !alone {
		be.idPending = true
		return nil
	}
	if err := be.flush(); err != nil {
		return err
	}
	_, _, err := be.await(idTag)
	return err
}

// await returns the responses the backend sent before the reply tagged
// tag (its untagged data), in order, and the text of that reply. Anything
// else, such as the words of a server that is not IMAP, fails at once, as
// nginx fails it ("upstream sent invalid response").
func (be *backend) await(tag string) (untagged []string, reply string, err error) {
	for range maxBackendLines {
		line, err := be.response()
		if err != nil {
			return nil, "", err
		}
		if reply, ok := strings.CutPrefix(line, tag+" "); ok {
			return untagged, reply, nil
		}
		if !strings.HasPrefix(line, "* ") {
			return nil, "", fmt.Errorf("backend sent %q", truncate(line))
		}
		untagged = append(untagged, line)
	}
	return nil, "", errors.New("backend sent too many lines")
}

// response reads one response: a line and, for each literal it announces,
// the literal and the line after it, joined as they came.
func (be *backend) response() (string, error) {
	resp, err := be.line()
	for err == nil {
		open := strings.LastIndexByte(resp, '{')
		if open < 0 {
			return resp, nil
		}
		lit, perr := parseLiteral([]byte(resp[open:]))
		if perr != nil {
			return resp, nil // braces in text
		}
		if len(resp)+lit.size > maxBackendLine {
			return "", errors.New("backend response too long")
		}
		data := make([]byte, lit.size)
		if _, err = io.ReadFull(be.r, data); err != nil {
			return "", fmt.Errorf("backend: %w", err)
		}
		var rest string
		rest, err = be.line()
		resp += "\r\n" + string(data) + rest
	}
	return "", err
}

// waitsForContinuation reports whether sending args waits for a
// continuation request: whether one of them is a synchronising literal.
func (be *backend) waitsForContinuation(args []arg) bool {
	for _, a := range args {
		if a.literal && be.syncLiteral(len(a.text)) {
			return true
		}
	}
	return false
}

// send writes a command line, waiting for the continuation request before
// each synchronising literal.
func (be *backend) send(args []arg) error {
	for _, a := range args {
		if !a.literal {
			be.out = append(be.out, a.text...)
			continue
		}
		if !be.syncLiteral(len(a.text)) {
			be.out = fmt.Appendf(be.out, "{%d+}\r\n", len(a.text))
		} else {
			be.out = fmt.Appendf(be.out, "{%d}\r\n", len(a.text))
			if err := be.continuation(); err != nil {
				return err
			}
		}
		be.out = append(be.out, a.text...)
	}
	be.out = append(be.out, "\r\n"...)
	return be.flush()
}

// flush sends what was written of the command so far.
func (be *backend) flush() error {
	_, err := be.conn.Write(be.out)
	be.out = be.out[:0]
	return err
}

// continuation flushes and waits for the backend's "+" before a literal.
func (be *backend) continuation() error {
	if err := be.flush(); err != nil {
		return err
	}
	cont, err := be.line()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(cont, "+") {
		return fmt.Errorf("backend refused a literal: %q", truncate(cont))
	}
	return nil
}

// syncLiteral reports whether a literal of size bytes must wait for a
// continuation request: unless the backend has LITERAL+, or LITERAL- and
// the literal is at most 4096 bytes (RFC 7888).
func (be *backend) syncLiteral(size int) bool {
	return !be.has("LITERAL+") && !(be.has("LITERAL-") && size <= 4096)
}

// line reads one line from the backend, without its line end.
func (be *backend) line() (string, error) {
	line, err := be.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		var long []byte
		long = append(long, line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(long) < maxBackendLine {
			line, err = be.r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil {
		return "", fmt.Errorf("backend: %w", err)
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

func (be *backend) has(capability string) bool {
	for _, c := range be.caps {
		if c == capability {
			return true
		}
	}
	return false
}

// greetingCapabilities returns the capabilities in a greeting of the form
// "* OK [CAPABILITY …] text".
func greetingCapabilities(greeting string) []string {
	_, after, ok := strings.Cut(greeting, "[CAPABILITY ")
	if !ok {
		return nil
	}
	list, _, ok := strings.Cut(after, "]")
	if !ok {
		return nil
	}
	return strings.Fields(strings.ToUpper(list))
}

// quoteEscaper escapes a quoted string's specials.
var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// astring encodes s for a backend command: a quoted string when it is
// printable ASCII, else a literal.
func astring(s string) arg {
	if printableASCII(s) {
		return arg{text: `"` + quoteEscaper.Replace(s) + `"`}
	}
	return arg{text: s, literal: true}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// standardIDFields are the ID fields of RFC 2971, the only ones passed on
// from the client: a backend that trusts the proxy also trusts fields such
// as Dovecot's x-session-id or x-forward-*, which only the proxy may set.
var standardIDFields = map[string]bool{
	"name": true, "version": true, "os": true, "os-version": true, "vendor": true,
	"support-url": true, "address": true, "date": true, "command": true,
	"arguments": true, "environment": true,
}

// idCommand passes the client's standard ID fields on, with the client's
// address for the backend's logs (Dovecot honours x-originating-ip from
// its login_trusted_networks).
func idCommand(cl *client) string {
	var fields []string
	for _, p := range cl.id {
		if !standardIDFields[strings.ToLower(p.field)] {
			continue
		}
		value := "NIL"
		if !p.nilValue {
			value = quote(p.value)
		}
		fields = append(fields, quote(p.field), value)
	}
	if host, port, err := net.SplitHostPort(cl.c.RemoteAddr().String()); err == nil {
		fields = append(fields, `"x-originating-ip"`, quote(host), `"x-originating-port"`, quote(port))
	}
	if host, port, err := net.SplitHostPort(cl.c.LocalAddr().String()); err == nil {
		fields = append(fields, `"x-connected-ip"`, quote(host), `"x-connected-port"`, quote(port))
	}
	if len(fields) == 0 {
		return "ID NIL"
	}
	return "ID (" + strings.Join(fields, " ") + ")"
}

// quote makes an IMAP quoted string of s, dropping what a quoted string
// cannot hold (the client's ID values are informational).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= ' ' && c <= '~':
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
