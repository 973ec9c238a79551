package smtp

import (
	"bytes"
	"errors"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/session"
)

// auth runs "AUTH mechanism [initial-response]" (RFC 4954).
func (cl *client) auth(arg []byte) bool {
	mechanisms := cl.srv.settled.mechanisms.For(cl.c)
	switch {
	case cl.c.TLSState() == session.TLSFirst:
		return cl.fail(mustStartTLS)
	case len(mechanisms) == 0:
		return cl.fail("503 5.5.1 AUTH not available")
	case cl.helo == "":
		return cl.fail("503 5.5.1 Send EHLO first")
	case len(arg) == 0:
		return cl.fail("501 5.5.4 Invalid argument")
	}
	mech, initial, hasInitial := bytes.Cut(arg, []byte{' '})
	if !hasInitial {
		initial = nil
	}
	req, err := cl.c.ReadSASL("smtp", string(mech), mechanisms, initial, "334 ")
	switch {
	case err == nil:
		return cl.finishLogin(req, nil)
	case errors.Is(err, session.ErrClientGone):
		return false
	case errors.Is(err, session.ErrMechanism):
		return cl.fail("504 5.5.4 Unrecognized authentication type")
	case errors.Is(err, session.ErrNoCertificate):
		return cl.fail("535 5.7.8 EXTERNAL needs a TLS client certificate")
	case errors.Is(err, auth.ErrCancelled):
		return cl.fail("501 5.7.0 Authentication cancelled")
	case errors.Is(err, auth.ErrBadBase64):
		return cl.fail("501 5.5.2 Cannot decode response")
	case errors.Is(err, session.ErrLineTooLong):
		return cl.fail("500 5.5.6 Line too long")
	}
	return cl.fail("535 5.7.8 Authentication credentials invalid")
}
