// Package smtp is the SMTP side of the mail proxy: it speaks SMTP to a
// client until the client has authenticated (or, with no authentication,
// named its first recipient), then relays the session to the backend the
// Authenticator chose.
package smtp

import (
	"context"
	"net"
	"slices"
	"time"

	"github.com/mailproxy/mailproxy/internal/engine"
	"github.com/mailproxy/mailproxy/session"
)

// DefaultAuthMethods are the methods offered when none are configured
// (smtp_auth).
var DefaultAuthMethods = []string{"login", "plain"}

// DefaultClientBuffer is the default smtp_client_buffer.
const DefaultClientBuffer = 4 << 10

// Server is an SMTP proxy for one server block. Fill its fields, then call
// Serve; the zero value serves with nginx's defaults (and refuses every
// login until Config.Auth is set).
type Server struct {
	// Config holds the settings every protocol shares.
	Config session.Config

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

	engine  engine.Server
	settled settings
}

// settings are a Server's fields with the defaults applied, fixed when it
// starts serving.
type settings struct {
	*engine.Settings
	capabilities  []string // EHLO keywords
	none          bool     // smtp_auth none
	greetingDelay time.Duration
	xclient       bool
	backendAuth   bool
}

// Serve accepts SMTP clients on l until l is closed or the Server is shut
// down. It may be called for several listeners at once. When l is a
// session.Listener, as a Proxy's are, its connections start as it says:
// with a PROXY protocol header, a TLS handshake, or both.
func (s *Server) Serve(l net.Listener) error {
	return s.engine.Serve(l, s.settle, s.serveConn)
}

// Shutdown stops accepting and waits for the sessions in progress to end,
// closing them when ctx ends first.
func (s *Server) Shutdown(ctx context.Context) error { return s.engine.Shutdown(ctx) }

// Close closes the listeners and every session at once.
func (s *Server) Close() error { return s.engine.Close() }

func (s *Server) settle() *engine.Settings {
	methods := engine.Or(s.AuthMethods, DefaultAuthMethods)
	s.settled = settings{
		Settings: engine.Settle(s.Config, engine.Protocol{
			MaxLine:    engine.OrPositive(s.ClientBuffer, DefaultClientBuffer),
			Mechanisms: engine.SASLMechanisms(methods),
			PlainText:  true,
			Replies:    replies,
			Name:       "smtp",
		}),
		capabilities:  slices.Clone(s.Capabilities),
		none:          slices.Contains(methods, "none"),
		greetingDelay: s.GreetingDelay,
		xclient:       !s.DisableXClient,
		backendAuth:   s.BackendAuth,
	}
	return s.settled.Settings
}
