// Package pop3 is the POP3 side of the mail proxy: it speaks POP3 to a
// client until the client has authenticated, then relays the session to the
// backend the Authenticator chose.
package pop3

import (
	"context"
	"net"
	"sync"

	"github.com/mailproxy/mailproxy/session"
)

// Defaults of the POP3 directives.
var (
	DefaultCapabilities = []string{"TOP", "USER", "UIDL"}
	DefaultAuthMethods  = []string{"plain"}
)

// maxLine bounds a POP3 command line: RFC 2449 allows 255 octets, and a
// SASL initial response needs more.
const maxLine = 4 << 10

// Server is a POP3 proxy for one server block. Fill its fields, then call
// Serve; the zero value serves with nginx's defaults (and refuses every
// login until Auth is set).
type Server struct {
	session.Config

	// Capabilities are listed by CAPA (pop3_capabilities); nil means
	// DefaultCapabilities.
	Capabilities []string
	// AuthMethods are the login methods offered (pop3_auth): "plain"
	// (USER/PASS and SASL PLAIN), "apop", "cram-md5", "external". Nil
	// means DefaultAuthMethods.
	AuthMethods []string

	loop    session.Loop
	once    sync.Once
	settled session.Config
}

// Serve accepts POP3 clients on l until l is closed or the Server is shut
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

func (s *Server) capabilities() []string {
	if s.Capabilities == nil {
		return DefaultCapabilities
	}
	return s.Capabilities
}
