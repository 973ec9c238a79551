package pop3

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
	LineTooLong:        "-ERR line too long",
	TooManyCommands:    "-ERR too many commands",
	TooManyErrors:      "-ERR too many invalid commands",
	NoClientCert:       "-ERR No required SSL certificate was sent",
	BadClientCert:      "-ERR SSL certificate error",
	TooManyConnections: "-ERR [SYS/TEMP] Too many connections, try again later",
	TooManyFailures:    "-ERR [SYS/TEMP] Too many failed logins, try again later",
	FailedLogins:       auth.Result{Error: "[SYS/TEMP] Too many failed logins, try again later"},
	SASL: engine.SASLReplies{
		Mechanism: "-ERR unsupported authentication mechanism",
		Cancelled: "-ERR authentication cancelled",
		BadBase64: "-ERR invalid base64",
		Invalid:   "-ERR invalid SASL response",
	},
}

// client is one POP3 client in the dialogue before proxying.
type client struct {
	st   *settings
	c    *engine.Conn
	ctx  context.Context
	salt string // the APOP challenge of the greeting
	user string // from USER, waiting for PASS
}

// serveConn runs the dialogue with one client.
func (s *Server) serveConn(ctx context.Context, nc net.Conn, end *engine.Ending) {
	cl := &client{st: &s.settled, c: engine.NewConn(nc, s.settled.Settings, end), ctx: ctx}
	defer cl.c.Release()
	if !cl.c.Open(ctx) {
		return
	}
	if s.settled.apop {
		cl.salt = auth.Challenge(s.settled.ServerName)
		cl.c.Reply("+OK POP3 ready %s", cl.salt)
	} else {
		cl.c.Reply("+OK POP3 ready")
	}
	cl.c.Run(ctx, cl.command)
}

// command runs one command line and reports whether the session goes on.
func (cl *client) command(line []byte) bool {
	name, arg, _ := bytes.Cut(line, []byte{' '})
	switch strings.ToUpper(string(name)) {
	case "CAPA":
		cl.c.Reply("+OK Capability list follows")
		for _, capa := range cl.st.capa.For(cl.c) {
			cl.c.Reply("%s", capa)
		}
		cl.c.Reply(".")
	case "NOOP":
		cl.c.Reply("+OK")
	case "QUIT":
		cl.c.CloseWith("+OK")
		return false
	case "STLS":
		return cl.startTLS(arg)
	case "USER", "PASS", "APOP", "AUTH":
		if cl.c.TLSState() == engine.TLSFirst {
			return cl.c.Fail("-ERR Run STLS first")
		}
		return cl.login(strings.ToUpper(string(name)), arg)
	default:
		return cl.c.Fail("-ERR invalid command")
	}
	return true
}

// login runs the login commands.
func (cl *client) login(name string, arg []byte) bool {
	switch name {
	case "USER":
		return cl.userCommand(string(arg))
	case "PASS":
		return cl.pass(string(arg))
	case "APOP":
		return cl.apop(string(arg))
	}
	return cl.auth(arg)
}

// startTLS runs "STLS" (RFC 2595): the go-ahead, then the TLS handshake.
// What the client sent after the command is discarded, and so is a USER
// given before it.
func (cl *client) startTLS(arg []byte) bool {
	switch {
	case !cl.c.CanStartTLS():
		return cl.c.Fail("-ERR invalid command")
	case len(arg) != 0:
		return cl.c.Fail("-ERR invalid arguments")
	}
	cl.user = ""
	return cl.c.StartTLS("+OK Begin TLS negotiation") == nil
}

func (cl *client) userCommand(name string) bool {
	switch {
	case !cl.st.userPass:
		return cl.c.Fail("-ERR USER not allowed")
	case name == "" || len(name) > 1024:
		return cl.c.Fail("-ERR invalid USER argument")
	}
	cl.user = name
	cl.c.Reply("+OK")
	return true
}

func (cl *client) pass(password string) bool {
	if cl.user == "" {
		return cl.c.Fail("-ERR USER first")
	}
	req := &auth.Request{Protocol: "pop3", Method: auth.MethodPlain, User: cl.user, Password: password}
	cl.user = ""
	return cl.finishLogin(req)
}

// apop runs "APOP name digest" (RFC 1939).
func (cl *client) apop(arg string) bool {
	if !cl.st.apop {
		return cl.c.Fail("-ERR APOP not allowed")
	}
	name, digest, _ := strings.Cut(arg, " ")
	req := &auth.Request{Protocol: "pop3"}
	if err := auth.APOPRequest(req, name, digest, cl.salt); err != nil {
		return cl.c.Fail("-ERR invalid APOP arguments")
	}
	return cl.finishLogin(req)
}

// auth runs "AUTH" (the mechanism list) or "AUTH mechanism
// [initial-response]" (RFC 5034).
func (cl *client) auth(arg []byte) bool {
	if len(arg) == 0 {
		cl.c.Reply("+OK methods supported:")
		for _, m := range cl.st.Mechanisms.For(cl.c) {
			cl.c.Reply("%s", m)
		}
		cl.c.Reply(".")
		return true
	}
	mech, initial, hasInitial := bytes.Cut(arg, []byte{' '})
	if !hasInitial {
		initial = nil
	}
	req, err := cl.c.ReadSASL("pop3", string(mech), initial, "+ ")
	if err != nil {
		return cl.c.SASLFailed("", err)
	}
	return cl.finishLogin(req)
}

// finishLogin asks the Authenticator about req, logs in to the backend and
// starts proxying; on failure it answers and reports whether the session
// goes on.
func (cl *client) finishLogin(req *auth.Request) bool {
	login, err := cl.c.Authenticate(cl.ctx, req)
	var refused *engine.Refusal
	switch {
	case errors.As(err, &refused):
		return cl.c.Refuse(refused, "-ERR "+refused.Message)
	case err != nil:
		return cl.c.Fail("-ERR [SYS/TEMP] Temporary authentication failure")
	}
	return cl.proxy(login)
}
