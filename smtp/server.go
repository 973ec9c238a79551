// Package smtp is the SMTP side of the mail proxy: it speaks SMTP to a
// client until the client has authenticated (or, with no authentication,
// named its first recipient), then relays the session to the backend the
// Authenticator chose.
package smtp

import (
	"net"
	"slices"
	"strings"
	"time"

	"github.com/mailproxy/mailproxy/session"
)

// DefaultAuthMethods are the methods offered when none are configured
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
	// "plain", "cram-md5", "external", and "none" (no authentication: the
	// first RCPT TO is routed by the Authenticator, the MX-front use). Nil
	// means DefaultAuthMethods.
	AuthMethods []string
	// ClientBuffer bounds a command line (smtp_client_buffer); zero means
	// DefaultClientBuffer.
	ClientBuffer int
	// GreetingDelay holds the greeting back (smtp_greeting_delay); a client
	// that talks before it is refused.
	GreetingDelay time.Duration
	// DisableXClient stops the proxy from passing the client's address to
	// the backend with XCLIENT (xclient off).
	DisableXClient bool
	// BackendAuth logs in to the backend with AUTH PLAIN and the user's
	// credentials (proxy_smtp_auth).
	BackendAuth bool

	session.Serving // Shutdown and Close
	settled         settings
}

// settings are a Server's fields with the defaults applied, fixed when it
// starts serving.
type settings struct {
	session.Config
	mechanisms   session.Announced[[]string] // SASL mechanisms offered in each TLS state
	none         bool                        // smtp_auth none
	clientBuffer int
}

// Serve accepts SMTP clients on l until l is closed or the Server is shut
// down. It may be called for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	return s.Run(l, s.settle, s.serveConn)
}

func (s *Server) settle() *session.Config {
	methods := s.AuthMethods
	if methods == nil {
		methods = DefaultAuthMethods
	}
	st := settings{Config: s.Config.WithDefaults(), none: slices.Contains(methods, "none"), clientBuffer: s.ClientBuffer}
	if st.clientBuffer <= 0 {
		st.clientBuffer = DefaultClientBuffer
	}
	var mechanisms []string
	for _, m := range methods {
		if m != "none" {
			mechanisms = append(mechanisms, strings.ToUpper(m))
		}
	}
	st.mechanisms = session.Mechanisms(mechanisms)
	s.settled = st
	return &s.settled.Config
}
