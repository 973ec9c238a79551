package imap

import (
	"errors"
	"slices"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/session"
)

// maxSASLSteps bounds the challenges of one exchange.
const maxSASLSteps = 4

// authenticate runs "AUTHENTICATE mechanism [initial-response]" (RFC 9051,
// 4959).
func (cl *client) authenticate(tag string, args []token) bool {
	if len(args) < 1 || len(args) > 2 || args[0].kind != atomToken {
		cl.c.Reply("%s BAD invalid AUTHENTICATE arguments", tag)
		return cl.c.Failed()
	}
	mech := strings.ToUpper(args[0].value)
	if !slices.Contains(cl.srv.settled.authMethods, strings.ToLower(mech)) {
		cl.c.Reply("%s NO unsupported authentication mechanism", tag)
		return cl.c.Failed()
	}
	if mech == auth.SASLExternal && cl.c.TLS() == nil {
		cl.c.Reply("%s NO [AUTHENTICATIONFAILED] EXTERNAL needs a TLS client certificate", tag)
		return cl.c.Failed()
	}
	req := &auth.Request{Protocol: "imap", TLS: cl.c.TLS()}
	mechanism, err := auth.NewSASL(mech, req, cl.srv.settled.ServerName)
	if err != nil {
		cl.c.Reply("%s NO unsupported authentication mechanism", tag)
		return cl.c.Failed()
	}
	var initial []byte
	if len(args) == 2 {
		if initial, err = auth.DecodeResponse([]byte(args[1].value), true); err != nil {
			return cl.saslFailed(tag, err)
		}
	}
	if err := cl.exchange(mechanism, initial); err != nil {
		return cl.saslFailed(tag, err)
	}
	return cl.finishLogin(tag, req)
}

// exchange runs the challenges and responses of a SASL mechanism.
func (cl *client) exchange(m interface {
	Next([]byte) ([]byte, bool, error)
}, resp []byte) error {
	for range maxSASLSteps {
		challenge, done, err := m.Next(resp)
		if err != nil || done {
			return err
		}
		cl.c.Reply("+ %s", auth.EncodeChallenge(challenge))
		line, err := cl.c.ReadLine()
		switch {
		case errors.Is(err, session.ErrLineTooLong):
			return err
		case err != nil:
			return errClientGone
		}
		if resp, err = auth.DecodeResponse(line, false); err != nil {
			return err
		}
	}
	return auth.ErrBadResponse
}

var errClientGone = errors.New("imap: client gone")

// saslFailed answers a failed exchange.
func (cl *client) saslFailed(tag string, err error) bool {
	switch {
	case errors.Is(err, errClientGone):
		return false
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
