// Package smtp is the SMTP side of the mail proxy: it speaks SMTP to a
// client until the client has authenticated (or, with no authentication,
// named its recipients), then relays the session to the backend the
// Authenticator chose.
package smtp

import (
	"context"
	"net"
	"sync"

	"github.com/mailproxy/mailproxy/session"
)

// DefaultAuthMethods are the SASL methods offered when none are configured
// (smtp_auth).
var DefaultAuthMethods = []string{"login", "plain"}

// DefaultClientBuffer is the default smtp_client_buffer.
const DefaultClientBuffer = 4 << 10

// Server is an SMTP proxy for one server block. Fill its fields, then call
// Serve; the zero value serves with nginx's defaults (and refuses every
// login until Auth is set).
type Server struct {
	session.Config

	// Capabilities are the EHLO keywords (smtp_capabilities), such as
	// "SIZE 10485760" or "8BITMIME".
	Capabilities []string
	// AuthMethods are the login methods offered (smtp_auth): "login",
	// "plain", "cram-md5", "external", "none". Nil means
	// DefaultAuthMethods.
	AuthMethods []string
	// ClientBuffer bounds a command line (smtp_client_buffer); zero means
	// DefaultClientBuffer.
	ClientBuffer int

	loop    session.Loop
	once    sync.Once
	settled session.Config
}

// Serve accepts SMTP clients on l until l is closed or the Server is shut
// down. It may be called for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	s.once.Do(func() { s.settled = s.Config.WithDefaults() })
	return s.loop.Serve(l, s.serveConn)
}

// Shutdown stops accepting and waits for the sessions to end, closing them
// when ctx ends first.
func (s *Server) Shutdown(ctx context.Context) error { return s.loop.Shutdown(ctx) }

// Close closes the listeners and every session at once.
func (s *Server) Close() error { return s.loop.Close() }

func (s *Server) clientBuffer() int {
	if s.ClientBuffer <= 0 {
		return DefaultClientBuffer
	}
	return s.ClientBuffer
}
