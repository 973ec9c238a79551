package imap

import (
	"errors"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/session"
)

// authenticate runs "AUTHENTICATE mechanism [initial-response]" (RFC 9051,
// 4959).
func (cl *client) authenticate(tag string, args []token) bool {
	if len(args) < 1 || len(args) > 2 || args[0].kind != atomToken {
		cl.c.Reply("%s BAD invalid AUTHENTICATE arguments", tag)
		return cl.c.Failed()
	}
	var initial []byte
	if len(args) == 2 {
		initial = []byte(args[1].value)
	}
	req, err := cl.c.ReadSASL("imap", args[0].value, cl.srv.settled.mechanisms.For(cl.c), initial, "+ ")
	if err != nil {
		return cl.saslFailed(tag, err)
	}
	return cl.finishLogin(tag, req)
}

// saslFailed answers a failed exchange.
func (cl *client) saslFailed(tag string, err error) bool {
	switch {
	case errors.Is(err, session.ErrClientGone):
		return false
	case errors.Is(err, session.ErrMechanism):
		cl.c.Reply("%s NO unsupported authentication mechanism", tag)
	case errors.Is(err, session.ErrNoCertificate):
		cl.c.Reply("%s NO [AUTHENTICATIONFAILED] EXTERNAL needs a TLS client certificate", tag)
	case errors.Is(err, auth.ErrCancelled):
		cl.c.Reply("%s BAD AUTHENTICATE cancelled", tag)
	case errors.Is(err, auth.ErrBadBase64):
		cl.c.Reply("%s BAD invalid base64", tag)
	case errors.Is(err, session.ErrLineTooLong):
		cl.c.Reply("%s BAD line too long", tag)
	default:
		cl.c.Reply("%s NO [AUTHENTICATIONFAILED] invalid SASL response", tag)
	}
	return cl.c.Failed()
}
