package imap

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/engine"
)

// replies are the untagged replies for broken limits. The certificate
// refusals close the session, so they are BYE where nginx says BAD (RFC
// 9051 7.1.5: BYE is how a server says it is closing).
var replies = engine.Replies{
	LineTooLong:        "* BYE line too long",
	TooManyCommands:    "* BYE too many commands",
	TooManyErrors:      "* BYE too many invalid commands",
	NoClientCert:       "* BYE No required SSL certificate was sent",
	BadClientCert:      "* BYE SSL certificate error",
	TooManyConnections: "* BYE Too many connections, try again later",
	TooManyFailures:    "* BYE Too many failed logins, try again later",
	FailedLogins:       auth.Result{Error: "[UNAVAILABLE] Too many failed logins, try again later"},
	SASL: engine.SASLReplies{ // after the tag
		Mechanism: "NO unsupported authentication mechanism",
		Cancelled: "BAD AUTHENTICATE cancelled",
		BadBase64: "BAD invalid base64",
		Invalid:   "NO [AUTHENTICATIONFAILED] invalid SASL response",
	},
}

// maxLiterals bounds the literals of one command.
const maxLiterals = 64

// client is one IMAP client in the dialogue before proxying.
type client struct {
	st  *settings
	c   *engine.Conn
	ctx context.Context
	// id holds the client's ID parameters (RFC 2971), passed on to the
	// backend.
	id []idParam
}

// serveConn runs the dialogue with one client.
func (s *Server) serveConn(ctx context.Context, nc net.Conn, end *engine.Ending) {
	cl := &client{st: &s.settled, c: engine.NewConn(nc, s.settled.Settings, end), ctx: ctx}
	defer cl.c.Release()
	if !cl.c.Open(ctx) {
		return
	}
	cl.c.Reply("* OK [CAPABILITY %s] IMAP4 ready", s.settled.capabilities.For(cl.c))
	cl.c.Run(ctx, cl.command)
}

// command runs one command line and reports whether the session goes on.
func (cl *client) command(line []byte) bool {
	tag, name, rest, ok := splitCommand(line)
	if !ok {
		return cl.c.Fail("* BAD invalid command")
	}
	args, err := cl.arguments(tag, rest, cl.st.MaxLine-len(line)-2)
	switch {
	case errors.Is(err, errLiteralRefused):
		return cl.c.Failed()
	case errors.Is(err, engine.ErrLineTooLong): // a line after a literal
		cl.c.TooLong()
		return false
	case err != nil && !errors.Is(err, errSyntax):
		return false // the client went away, or a non-synchronising literal was too big
	case err != nil:
		return cl.c.Fail(tag + " BAD invalid arguments")
	}
	return cl.dispatch(tag, strings.ToUpper(name), args)
}

func (cl *client) dispatch(tag, name string, args []token) bool {
	switch name {
	case "CAPABILITY":
		cl.c.Reply("* CAPABILITY %s", cl.st.capabilities.For(cl.c))
		cl.c.Reply("%s OK CAPABILITY completed", tag)
	case "NOOP":
		cl.c.Reply("%s OK NOOP completed", tag)
	case "LOGOUT":
		cl.c.Reply("* BYE IMAP4 proxy logging out")
		cl.c.CloseWith(tag + " OK LOGOUT completed")
		return false
	case "ID":
		return cl.identify(tag, args)
	case "STARTTLS":
		return cl.startTLS(tag, args)
	case "LOGIN", "AUTHENTICATE":
		if cl.c.TLSState() == engine.TLSFirst {
			return cl.c.Fail(tag + " NO [PRIVACYREQUIRED] Run STARTTLS first")
		}
		if name == "LOGIN" {
			return cl.login(tag, args)
		}
		return cl.authenticate(tag, args)
	default:
		return cl.c.Fail(tag + " BAD invalid command")
	}
	return true
}

// splitCommand splits "tag SP command [SP arguments]", checking the tag.
func splitCommand(line []byte) (tag, name string, rest []byte, ok bool) {
	t, after, found := bytes.Cut(line, []byte{' '})
	if !found || !validTag(t) {
		return "", "", nil, false
	}
	n, rest, _ := bytes.Cut(after, []byte{' '})
	if len(n) == 0 || atomLen(n) != len(n) {
		return "", "", nil, false
	}
	return string(t), string(n), rest, true
}

// validTag reports whether t is made of ASTRING-CHARs other than "+"
// (RFC 9051).
func validTag(t []byte) bool {
	return len(t) > 0 && atomLen(t) == len(t) && bytes.IndexByte(t, '+') < 0
}

var errLiteralRefused = errors.New("imap: literal refused")

// arguments tokenizes the rest of a command line, reading the literals it
// announces and the lines that follow them. The whole command must fit in
// the client buffer, literals included, as in nginx, which reads it all
// into that buffer: left is what the first line left of it. A literal
// beyond what is left is refused; a line beyond it ends the session
// (engine.ErrLineTooLong). A session then holds at most a client buffer
// of a command, however many literals it announces.
func (cl *client) arguments(tag string, rest []byte, left int) ([]token, error) {
	toks, lit, err := tokenize(rest)
	for n := 0; err == nil && lit != nil; n++ {
		var data []byte
		if data, err = cl.readLiteral(tag, lit, n, left); err != nil {
			return nil, err
		}
		left -= len(data)
		toks = append(toks, token{kind: stringToken, value: string(data)})
		var line []byte
		if line, err = cl.c.ReadLine(); err != nil {
			return nil, err
		}
		if left -= len(line) + 2; left < 0 {
			return nil, engine.ErrLineTooLong
		}
		var more []token
		more, lit, err = tokenize(line)
		toks = append(toks, more...)
	}
	return toks, err
}

// readLiteral reads the n-th literal of a command, which may take left
// bytes of the client buffer. A synchronising literal larger than that is
// refused before the client sends it; a non-synchronising one has been
// sent already, and ends the session.
func (cl *client) readLiteral(tag string, lit *literal, n, left int) ([]byte, error) {
	if lit.size > left || n >= maxLiterals {
		if !lit.sync {
			cl.c.CloseWith("* BYE literal too big")
			return nil, errors.New("imap: non-synchronising literal too big")
		}
		cl.c.Reply("%s BAD literal too big", tag)
		return nil, errLiteralRefused
	}
	if lit.sync {
		cl.c.Reply("+ OK")
	}
	return cl.c.ReadLiteral(lit.size)
}
