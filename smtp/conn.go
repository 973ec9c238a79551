package smtp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/engine"
)

var replies = engine.Replies{
	LineTooLong:        "500 5.5.6 Line too long",
	TooManyCommands:    "421 4.7.0 Too many commands",
	TooManyErrors:      "421 4.7.0 Too many errors",
	NoClientCert:       "421 4.7.1 No required SSL certificate was sent",
	BadClientCert:      "421 4.7.1 SSL certificate error",
	TooManyConnections: "421 4.7.0 Too many connections, try again later",
	TooManyFailures:    "421 4.7.0 Too many failed logins, try again later",
	FailedLogins:       auth.Result{Error: "Too many failed logins, try again later", SMTPCode: "421 4.7.0"},
	SASL: engine.SASLReplies{
		Mechanism: "504 5.5.4 Unrecognized authentication type",
		Cancelled: "501 5.7.0 Authentication cancelled",
		BadBase64: "501 5.5.2 Cannot decode response",
		Invalid:   "535 5.7.8 Authentication credentials invalid",
	},
}

// mustStartTLS refuses a login before TLS with starttls only (RFC 3207).
const mustStartTLS = "530 5.7.0 Must issue a STARTTLS command first"

// client is one SMTP client in the dialogue before proxying.
type client struct {
	st   *settings
	c    *engine.Conn
	ctx  context.Context
	helo string // the name given with HELO or EHLO; "" if none (AUTH and MAIL need none)
	ehlo bool   // the client said EHLO (not HELO)
	from string // the MAIL FROM command line, with smtp_auth none
}

// serveConn runs the dialogue with one client.
func (s *Server) serveConn(ctx context.Context, nc net.Conn, end *engine.Ending) {
	st := &s.settled
	cl := &client{st: st, c: engine.NewConn(nc, st.Settings, end), ctx: ctx}
	defer cl.c.Release()
	if !cl.c.Open(ctx) {
		return
	}
	if st.greetingDelay > 0 && cl.c.SendsWithin(st.greetingDelay) {
		cl.rejectEarly()
		return
	}
	cl.c.Reply("220 %s ESMTP ready", st.ServerName)
	cl.c.Run(ctx, cl.command)
}

// rejectEarly refuses a client that talked before the greeting
// (smtp_greeting_delay) in nginx's words, or closes the connection of one
// that went away. Only the command's verb is logged (the letters it
// starts with, eight at most: STARTTLS), where nginx logs the whole line:
// an early AUTH carries credentials.
func (cl *client) rejectEarly() {
	early := cl.c.Buffered()
	if len(early) == 0 { // the client went away
		cl.c.Close()
		return
	}
	n := 0
	for n < min(len(early), 8) && 'a' <= early[n]|0x20 && early[n]|0x20 <= 'z' {
		n++
	}
	cl.c.Log.Info("client was rejected before greeting", "command", string(early[:n]))
	cl.c.CloseWith("503 5.5.0 Improper use of SMTP command pipelining")
}

// command runs one command line and reports whether the session goes on.
// A line with a NUL or a CR before its end is an invalid command: nginx
// refuses a bare CR so (a bare LF ends a line, as in nginx), and a NUL
// has no place in a command and would cut it short for some backends.
// Such a line never reaches the auth service or a backend.
func (cl *client) command(line []byte) bool {
	if bytes.ContainsAny(line, "\r\x00") {
		return cl.c.Fail("500 5.5.1 Invalid command")
	}
	name, arg, _ := bytes.Cut(line, []byte{' '})
	switch strings.ToUpper(string(name)) {
	case "EHLO":
		return cl.hello(string(arg), true)
	case "HELO":
		return cl.hello(string(arg), false)
	case "AUTH":
		return cl.auth(arg)
	case "MAIL":
		return cl.mail(string(line))
	case "RCPT":
		return cl.rcpt(string(line))
	case "RSET":
		cl.from = ""
		cl.c.Reply("250 2.0.0 OK")
	case "NOOP":
		cl.c.Reply("250 2.0.0 OK")
	case "QUIT":
		cl.c.CloseWith("221 2.0.0 Bye")
		return false
	case "STARTTLS":
		if cl.c.CanStartTLS() {
			return cl.startTLS(arg)
		}
		return cl.c.Fail("502 5.5.1 Command not available before authentication")
	case "DATA", "VRFY", "EXPN", "BDAT", "ETRN", "HELP":
		return cl.c.Fail("502 5.5.1 Command not available before authentication")
	default:
		return cl.c.Fail("500 5.5.1 Invalid command")
	}
	return true
}

// startTLS runs "STARTTLS" (RFC 3207): the go-ahead, then the TLS
// handshake. What the client sent after the command is discarded, and so
// is what it said before: it must say EHLO again.
func (cl *client) startTLS(arg []byte) bool {
	if len(arg) != 0 {
		return cl.c.Fail("501 5.5.4 Syntax error (no parameters allowed)")
	}
	cl.helo, cl.ehlo, cl.from = "", false, ""
	return cl.c.StartTLS("220 2.0.0 Start TLS") == nil
}

// hello answers EHLO with the extensions, one per line, or HELO. As in
// nginx, smtp_capabilities come first, then AUTH, and STARTTLS last.
func (cl *client) hello(name string, ehlo bool) bool {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 255 || strings.ContainsAny(name, " \t") {
		return cl.c.Fail("501 5.5.4 Invalid argument")
	}
	cl.helo, cl.ehlo, cl.from = name, ehlo, ""
	st := cl.st
	if !ehlo {
		cl.c.Reply("250 %s", st.ServerName)
		return true
	}
	lines := append([]string{st.ServerName}, st.capabilities...)
	if mechanisms := st.Mechanisms.For(cl.c); len(mechanisms) > 0 {
		lines = append(lines, "AUTH "+strings.Join(mechanisms, " "))
	}
	if cl.c.CanStartTLS() {
		lines = append(lines, "STARTTLS")
	}
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		cl.c.Reply("250%s%s", sep, l)
	}
	return true
}

// finishLogin asks the Authenticator about req, prepares the backend
// session and starts proxying. replay holds the MAIL and RCPT lines to send
// the backend under smtp_auth none, whose reply to RCPT answers the client;
// after AUTH (replay nil) the client gets "235 2.0.0 OK".
func (cl *client) finishLogin(req *auth.Request, replay []string) bool {
	req.SMTPHelo = cl.helo
	login, err := cl.c.Authenticate(cl.ctx, req)
	var refused *engine.Refusal
	switch {
	case errors.As(err, &refused):
		return cl.c.Refuse(refused, refusalReply(refused))
	case err != nil:
		return cl.c.Fail("451 4.3.0 Temporary authentication failure")
	}
	if !cl.canLogIn(login, req) {
		return cl.c.Fail("451 4.3.0 Temporary authentication failure")
	}
	return cl.proxy(login, req, replay)
}

// refusalReply is the auth service's code (Auth-Error-Code, default 535
// 5.7.8) with its message.
func refusalReply(r *engine.Refusal) string {
	code := r.SMTPCode
	if code == "" {
		code = "535 5.7.8"
	}
	return code + " " + r.Message
}

// canLogIn reports whether the backend login of proxy_smtp_auth can be
// made: AUTH PLAIN needs a password, which a client that proved itself
// with EXTERNAL or CRAM-MD5 never gave, so the Authenticator must. As in
// nginx, it is a temporary failure when it did not.
func (cl *client) canLogIn(login *engine.Login, req *auth.Request) bool {
	switch {
	case !cl.st.backendAuth || login.Password != "":
		return true
	case req.Method == auth.MethodPlain || req.Method == auth.MethodLogin || req.Method == auth.MethodNone:
		return true
	}
	cl.c.Log.Error("proxy_smtp_auth: the Authenticator gave no backend password", "user", req.User, "method", string(req.Method))
	return false
}
