package imap

import (
	"errors"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/engine"
)

// login runs "LOGIN user password".
func (cl *client) login(tag string, args []token) bool {
	creds, ok := astrings(args, 2)
	if !ok {
		return cl.c.Fail(tag + " BAD invalid LOGIN arguments")
	}
	req := &auth.Request{Protocol: "imap", Method: auth.MethodPlain, User: creds[0], Password: creds[1]}
	return cl.finishLogin(tag, req)
}

// finishLogin asks the Authenticator about req, logs in to the backend and
// starts proxying; on failure it answers the client and reports whether
// the session goes on.
func (cl *client) finishLogin(tag string, req *auth.Request) bool {
	login, err := cl.c.Authenticate(cl.ctx, req)
	var refused *engine.Refusal
	switch {
	case errors.As(err, &refused):
		return cl.refuse(tag, refused)
	case err != nil:
		return cl.c.Fail(tag + " NO [UNAVAILABLE] Temporary authentication failure")
	}
	return cl.proxy(tag, login)
}

// refuse answers a refused login: the auth service's message, with the
// AUTHENTICATIONFAILED code (RFC 5530) unless it brings a code of its own.
func (cl *client) refuse(tag string, r *engine.Refusal) bool {
	msg := r.Message
	if !strings.HasPrefix(msg, "[") {
		msg = "[AUTHENTICATIONFAILED] " + msg
	}
	return cl.c.Refuse(r, tag+" NO "+msg)
}
