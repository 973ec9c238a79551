package smtp

import (
	"bytes"
	"context"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/session"
)

var replies = session.Replies{
	LineTooLong:     "500 5.5.6 Line too long",
	TooManyCommands: "421 4.7.0 Too many commands",
	TooManyErrors:   "421 4.7.0 Too many errors",
}

// serveConn runs the dialogue with one client.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	c := session.NewConn(nc, &s.settled, s.clientBuffer(), replies)
	c.Reply("220 %s ESMTP ready", s.settled.ServerName)
	c.Run(ctx, func(line []byte) bool { return s.command(c, line) })
}

// command runs one command line and reports whether the session goes on.
func (s *Server) command(c *session.Conn, line []byte) bool {
	name, _, _ := bytes.Cut(line, []byte{' '})
	switch strings.ToUpper(string(name)) {
	case "EHLO":
		s.ehlo(c)
	case "HELO":
		c.Reply("250 %s", s.settled.ServerName)
	case "NOOP", "RSET":
		c.Reply("250 2.0.0 OK")
	case "QUIT":
		c.Close("221 2.0.0 Bye")
		return false
	default:
		c.Reply("502 5.5.2 Command not recognized")
		return c.Failed()
	}
	return true
}

// ehlo answers EHLO with the configured extensions, one per line.
func (s *Server) ehlo(c *session.Conn) {
	lines := append([]string{s.settled.ServerName}, s.Capabilities...)
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		c.Reply("250%s%s", sep, l)
	}
}
