package engine

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/errorlog"
)

// maxSASLSteps bounds the challenges of one exchange.
const maxSASLSteps = 4

// ErrClientGone is returned by [Conn.Exchange] when the client went away
// in the middle of an exchange.
var ErrClientGone = errors.New("mail: client gone")

// Exchange runs the challenges and responses of a SASL mechanism, starting
// with the client's initial response (nil when it gave none). Each
// challenge goes out as prefix followed by its base64 ("+ " for IMAP and
// POP3, "334 " for SMTP). It returns nil when the mechanism is done, or
// the error to answer: errCancelled, errBadBase64,
// ErrLineTooLong, a mechanism error, or ErrClientGone.
func (c *Conn) Exchange(m sasl.Server, initial []byte, prefix string) error {
	resp := initial
	for range maxSASLSteps {
		challenge, done, err := m.Next(resp)
		if err != nil || done {
			return err
		}
		c.Reply("%s%s", prefix, encodeChallenge(challenge))
		line, err := c.ReadLine()
		switch {
		case errors.Is(err, ErrLineTooLong):
			return err
		case err != nil:
			return ErrClientGone
		}
		if resp, err = decodeResponse(line, false); err != nil {
			return err
		}
	}
	return auth.ErrBadResponse
}

// Errors of [Conn.ReadSASL] before the exchange starts.
var (
	ErrMechanism = errors.New("mail: unsupported authentication mechanism")
)

// ReadSASL runs a client's SASL login (IMAP AUTHENTICATE, POP3 AUTH, SMTP
// AUTH) for mech, which must be accepted in the session's TLS state: one
// announced, or PLAIN and LOGIN where the protocol takes them anyway.
// initial is the initial response as the client wrote it ("=" for an
// empty one), or nil. It returns the Request filled with the credentials,
// or the error to answer: ErrMechanism, or one of [Conn.Exchange]'s.
func (c *Conn) ReadSASL(protocol, mech string, initial []byte, prefix string) (*auth.Request, error) {
	mech = strings.ToUpper(mech)
	if !c.cfg.accepts(c.TLSState(), mech) {
		return nil, ErrMechanism
	}
	req := &auth.Request{Protocol: protocol, TLS: c.TLS()}
	m, err := auth.NewSASL(mech, req, c.cfg.ServerName)
	if err != nil {
		return nil, ErrMechanism
	}
	var resp []byte
	if initial != nil {
		if resp, err = decodeResponse(initial, true); err != nil {
			return nil, err
		}
	}
	return req, c.Exchange(m, resp, prefix)
}

// SASLFailed answers err, an error of [Conn.ReadSASL], with the protocol's
// reply after prefix (an IMAP tag and a space, or nothing) and counts it.
// It reports whether the session goes on: not when the client went away,
// nor after a response beyond the client buffer, which ends the session.
// A response that is not base64, or that the mechanism refuses, is logged
// at level info, as nginx logs them; never the response itself.
func (c *Conn) SASLFailed(prefix string, err error) bool {
	r := &c.replies.SASL
	reply := r.Invalid
	switch {
	case errors.Is(err, ErrClientGone):
		return false
	case errors.Is(err, ErrLineTooLong):
		c.TooLong()
		return false
	case errors.Is(err, ErrMechanism):
		reply = r.Mechanism
	case errors.Is(err, errCancelled):
		reply = r.Cancelled
	case errors.Is(err, errBadBase64):
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client sent invalid base64 encoding in SASL response", inAuthState)
		reply = r.BadBase64
	default:
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client sent invalid SASL response", inAuthState)
	}
	return c.Fail(prefix + reply)
}

// Errors of a client's SASL response.
var (
	errCancelled = errors.New("mail: SASL exchange cancelled by the client")
	errBadBase64 = errors.New("mail: SASL response is not valid base64")
)

// decodeResponse decodes a client's base64 SASL response line. "*"
// cancels the exchange (errCancelled). With initial set, the line is an
// initial response where "=" stands for an empty one (RFC 4959, 4954).
func decodeResponse(line []byte, initial bool) ([]byte, error) {
	switch {
	case len(line) == 1 && line[0] == '*':
		return nil, errCancelled
	case initial && len(line) == 1 && line[0] == '=':
		return []byte{}, nil
	}
	if bytes.ContainsAny(line, "\r\n") {
		return nil, errBadBase64
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
	n, err := base64.StdEncoding.Strict().Decode(out, line)
	if err != nil {
		return nil, errBadBase64
	}
	return out[:n], nil
}

// encodeChallenge encodes a server challenge for the wire.
func encodeChallenge(challenge []byte) string {
	return base64.StdEncoding.EncodeToString(challenge)
}
