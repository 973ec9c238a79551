package imap

import (
	"bytes"
	"context"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/session"
)

// replies are the untagged replies for broken limits.
var replies = session.Replies{
	LineTooLong:     "* BAD line too long",
	TooManyCommands: "* BYE too many commands",
	TooManyErrors:   "* BYE too many invalid commands",
}

// serveConn runs the dialogue with one client.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	c := session.NewConn(nc, &s.settled.Config, s.settled.clientBuffer, replies)
	c.Reply("* OK IMAP4 ready")
	c.Run(ctx, func(line []byte) bool { return s.command(c, line) })
}

// command runs one command line and reports whether the session goes on.
func (s *Server) command(c *session.Conn, line []byte) bool {
	tag, name, ok := splitCommand(line)
	if !ok {
		c.Reply("* BAD invalid command")
		return c.Failed()
	}
	switch strings.ToUpper(name) {
	case "CAPABILITY":
		c.Reply("* CAPABILITY %s", s.settled.capabilities)
		c.Reply("%s OK completed", tag)
	case "NOOP":
		c.Reply("%s OK completed", tag)
	case "LOGOUT":
		c.Reply("* BYE")
		c.Close(tag + " OK completed")
		return false
	default:
		c.Reply("%s BAD invalid command", tag)
		return c.Failed()
	}
	return true
}

// splitCommand splits "tag SP command [SP arguments]", checking the tag.
func splitCommand(line []byte) (tag, name string, ok bool) {
	t, rest, found := bytes.Cut(line, []byte{' '})
	if !found || !validTag(t) {
		return "", "", false
	}
	n, _, _ := bytes.Cut(rest, []byte{' '})
	if len(n) == 0 {
		return "", "", false
	}
	return string(t), string(n), true
}

// validTag reports whether t is made of ASTRING-CHARs other than "+"
// (RFC 9051).
func validTag(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	for _, b := range t {
		if b <= ' ' || b >= 0x7f || bytes.IndexByte([]byte(`(){%*"\+`), b) >= 0 {
			return false
		}
	}
	return true
}
