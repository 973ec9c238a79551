package smtp

import (
	"bytes"

	"github.com/mailproxy/mailproxy/internal/engine"
)

// auth runs "AUTH mechanism [initial-response]" (RFC 4954). PLAIN and
// LOGIN are taken even when smtp_auth does not name them, as nginx does.
func (cl *client) auth(arg []byte) bool {
	switch {
	case cl.c.TLSState() == engine.TLSFirst:
		return cl.c.Fail(mustStartTLS)
	case len(arg) == 0:
		return cl.c.Fail("501 5.5.4 Invalid argument")
	}
	mech, initial, hasInitial := bytes.Cut(arg, []byte{' '})
	if !hasInitial {
		initial = nil
	}
	req, err := cl.c.ReadSASL("smtp", string(mech), initial, "334 ")
	if err != nil {
		return cl.c.SASLFailed("", err)
	}
	return cl.finishLogin(req, nil)
}
