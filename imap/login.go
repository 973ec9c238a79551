package imap

import (
	"errors"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/session"
)

// login runs "LOGIN user password".
func (cl *client) login(tag string, args []token) bool {
	creds, ok := astrings(args, 2)
	if !ok {
		cl.c.Reply("%s BAD invalid LOGIN arguments", tag)
		return cl.c.Failed()
	}
	req := &auth.Request{Protocol: "imap", Method: auth.MethodPlain, User: creds[0], Password: creds[1]}
	return cl.finishLogin(tag, req)
}

// finishLogin asks the Authenticator about req, logs in to the backend and
// starts proxying; on failure it answers the client and reports whether
// the session goes on.
func (cl *client) finishLogin(tag string, req *auth.Request) bool {
	login, err := cl.c.Authenticate(cl.ctx, req)
	var refused *session.Refusal
	switch {
	case errors.As(err, &refused):
		return cl.refuse(tag, refused)
	case err != nil:
		cl.c.Reply("%s NO [UNAVAILABLE] Temporary authentication failure", tag)
		return cl.c.Failed()
	}
	return cl.proxy(tag, login)
}

// refuse answers a refused login: the auth service's message, with the
// AUTHENTICATIONFAILED code (RFC 5530) unless it brings a code of its own.
func (cl *client) refuse(tag string, r *session.Refusal) bool {
	msg := r.Message
	if !strings.HasPrefix(msg, "[") {
		msg = "[AUTHENTICATIONFAILED] " + msg
	}
	if r.Close {
		cl.c.Close(tag + " NO " + msg)
		return false
	}
	cl.c.Reply("%s NO %s", tag, msg)
	return cl.c.Failed()
}
