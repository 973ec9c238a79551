// Package imap is the IMAP side of the mail proxy: it speaks IMAP to a
// client until the client has authenticated, then relays the session to the
// backend the Authenticator chose.
package imap

import (
	"context"
	"net"
	"slices"
	"strings"

	"github.com/mailproxy/mailproxy/internal/engine"
	"github.com/mailproxy/mailproxy/session"
)

// Defaults of the IMAP directives.
var (
	DefaultCapabilities = []string{"IMAP4", "IMAP4rev1", "UIDPLUS"}
	DefaultAuthMethods  = []string{"plain"}
)

// DefaultClientBuffer is the default imap_client_buffer.
const DefaultClientBuffer = 4 << 10

// Server is an IMAP proxy for one server block. Fill its fields, then call
// Serve; the zero value serves with nginx's defaults (and refuses every
// login until Config.Auth is set).
type Server struct {
	// Config holds the settings every protocol shares.
	Config session.Config

	// Capabilities are announced before login (imap_capabilities); nil
	// means DefaultCapabilities.
	Capabilities []string
	// AuthMethods are the SASL mechanisms announced (imap_auth): "plain",
	// "login", "cram-md5", "external". Nil means DefaultAuthMethods.
	// LOGIN, and AUTHENTICATE PLAIN and LOGIN, are taken whatever it says.
	AuthMethods []string
	// ClientBuffer bounds a command line (imap_client_buffer); zero means
	// DefaultClientBuffer.
	ClientBuffer int

	engine  engine.Server
	settled settings
}

// settings are a Server's fields with the defaults applied, fixed when it
// starts serving.
type settings struct {
	*engine.Settings
	// capabilities is the CAPABILITY line in each TLS state.
	capabilities engine.Announced[string]
}

// Serve accepts IMAP clients on l until l is closed or the Server is shut
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

// settle fixes the capabilities of each TLS state: STARTTLS while it is
// offered; with starttls only, no AUTH= and LOGINDISABLED before TLS (RFC
// 9051). AUTHENTICATE takes PLAIN and LOGIN even when imap_auth does not
// name them, as nginx does: LOGIN is allowed anyway.
func (s *Server) settle() *engine.Settings {
	mechanisms := engine.SASLMechanisms(engine.Or(s.AuthMethods, DefaultAuthMethods))
	st := settings{Settings: engine.Settle(s.Config, engine.Protocol{
		MaxLine:    engine.OrPositive(s.ClientBuffer, DefaultClientBuffer),
		Mechanisms: mechanisms,
		PlainText:  true,
		Replies:    replies,
		Name:       "imap",
	})}
	caps := engine.Or(s.Capabilities, DefaultCapabilities)
	var startTLS []string
	if st.StartTLSOffered() {
		startTLS = []string{"STARTTLS"}
	}
	st.capabilities[engine.Plain] = capabilities(caps, mechanisms, startTLS...)
	st.capabilities[engine.TLSFirst] = capabilities(caps, nil, "STARTTLS", "LOGINDISABLED")
	st.capabilities[engine.Secure] = capabilities(caps, mechanisms)
	s.settled = st
	return st.Settings
}

// capabilities returns a CAPABILITY list as nginx builds it: the configured
// capabilities as written, an AUTH= entry for each SASL mechanism, then
// extra. The proxy reads ID, SASL-IR and LITERAL+ input whether or not the
// configured list announces them.
func capabilities(caps, mechanisms []string, extra ...string) string {
	list := slices.Clone(caps)
	for _, m := range mechanisms {
		list = appendNew(list, "AUTH="+m)
	}
	for _, c := range extra {
		list = appendNew(list, c)
	}
	return strings.Join(list, " ")
}

func appendNew(list []string, c string) []string {
	for _, have := range list {
		if strings.EqualFold(have, c) {
			return list
		}
	}
	return append(list, c)
}
