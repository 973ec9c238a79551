package pop3

import (
	"bytes"
	"context"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/session"
)

var replies = session.Replies{
	LineTooLong:     "-ERR line too long",
	TooManyCommands: "-ERR too many commands",
	TooManyErrors:   "-ERR too many invalid commands",
}

// serveConn runs the dialogue with one client.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	c := session.NewConn(nc, &s.settled, maxLine, replies)
	c.Reply("+OK POP3 ready")
	c.Run(ctx, func(line []byte) bool { return s.command(c, line) })
}

// command runs one command line and reports whether the session goes on.
func (s *Server) command(c *session.Conn, line []byte) bool {
	name, _, _ := bytes.Cut(line, []byte{' '})
	switch strings.ToUpper(string(name)) {
	case "CAPA":
		c.Reply("+OK Capability list follows")
		for _, capa := range s.capabilities() {
			c.Reply("%s", capa)
		}
		c.Reply(".")
	case "NOOP":
		c.Reply("+OK")
	case "QUIT":
		c.Close("+OK")
		return false
	default:
		c.Reply("-ERR invalid command")
		return c.Failed()
	}
	return true
}
