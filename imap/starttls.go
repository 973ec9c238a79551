package imap

// startTLS runs "STARTTLS" (RFC 9051 6.2.1): the go-ahead, then the TLS
// handshake. What the client sent after the command is discarded, and so
// is the ID it gave before.
func (cl *client) startTLS(tag string, args []token) bool {
	switch {
	case !cl.c.CanStartTLS():
		return cl.c.Fail(tag + " BAD invalid command")
	case len(args) != 0:
		return cl.c.Fail(tag + " BAD invalid arguments")
	}
	cl.id = nil
	return cl.c.StartTLS(tag+" OK Begin TLS negotiation now") == nil
}
