package smtp

import (
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/engine"
)

// mail takes "MAIL FROM:<address> [parameters]" with smtp_auth none; the
// line is kept to be sent to the auth service and replayed to the backend.
func (cl *client) mail(line string) bool {
	switch refusal := cl.envelopeRefusal(); {
	case refusal != "":
		return cl.c.Fail(refusal)
	case cl.from != "":
		return cl.c.Fail("503 5.5.1 Nested MAIL command")
	case !hasPathPrefix(line, "MAIL FROM:"):
		return cl.c.Fail("501 5.5.4 Syntax: MAIL FROM:<address>")
	}
	cl.from = line
	cl.c.Reply("250 2.1.0 OK")
	return true
}

// rcpt takes the first "RCPT TO:<address>" with smtp_auth none: the
// Authenticator routes the session by it, and the backend gets MAIL and
// RCPT replayed.
func (cl *client) rcpt(line string) bool {
	switch refusal := cl.envelopeRefusal(); {
	case refusal != "":
		return cl.c.Fail(refusal)
	case cl.from == "":
		return cl.c.Fail("503 5.5.1 Need MAIL before RCPT")
	case !hasPathPrefix(line, "RCPT TO:"):
		return cl.c.Fail("501 5.5.4 Syntax: RCPT TO:<address>")
	}
	req := &auth.Request{Protocol: "smtp", Method: auth.MethodNone, SMTPFrom: cl.from, SMTPTo: []string{line}}
	return cl.finishLogin(req, []string{cl.from, line})
}

// envelopeRefusal returns the reply that refuses MAIL and RCPT before a
// login: always without smtp_auth none, and before STARTTLS under
// starttls only. It returns "" when the envelope may come.
func (cl *client) envelopeRefusal() string {
	switch {
	case !cl.st.none:
		return "530 5.7.0 Authentication required"
	case cl.c.TLSState() == engine.TLSFirst:
		return mustStartTLS
	}
	return ""
}

// hasPathPrefix reports whether line starts with prefix (any case) and a
// path follows: "MAIL FROM:<a@b>", "MAIL FROM: <>" .
func hasPathPrefix(line, prefix string) bool {
	if len(line) < len(prefix) || !strings.EqualFold(line[:len(prefix)], prefix) {
		return false
	}
	return strings.HasPrefix(strings.TrimLeft(line[len(prefix):], " "), "<")
}
