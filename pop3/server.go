// Package pop3 is the POP3 side of the mail proxy: it speaks POP3 to a
// client until the client has authenticated, then relays the session to the
// backend the Authenticator chose.
package pop3

import (
	"context"
	"net"
	"slices"
	"strings"

	"github.com/mailproxy/mailproxy/internal/engine"
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
// login until Config.Auth is set).
type Server struct {
	// Config holds the settings every protocol shares.
	Config session.Config

	// Capabilities are listed by CAPA (pop3_capabilities); nil means
	// DefaultCapabilities.
	Capabilities []string
	// AuthMethods are the login methods offered (pop3_auth): "plain"
	// (USER/PASS, and SASL PLAIN announced), "apop", "cram-md5",
	// "external". Nil means DefaultAuthMethods. Where USER/PASS is allowed,
	// AUTH takes PLAIN and LOGIN whatever it says, as nginx does.
	AuthMethods []string

	engine  engine.Server
	settled settings
}

// settings are a Server's fields with the defaults applied, fixed when it
// starts serving.
type settings struct {
	*engine.Settings
	capa     engine.Announced[[]string] // the CAPA list in each TLS state
	userPass bool                       // USER/PASS allowed
	apop     bool
}

// Serve accepts POP3 clients on l until l is closed or the Server is shut
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
	caps := engine.Or(s.Capabilities, DefaultCapabilities)
	mechs := engine.SASLMechanisms(methods)
	userPass := slices.Contains(methods, "plain")
	st := settings{
		Settings: engine.Settle(s.Config, engine.Protocol{Name: "pop3", MaxLine: maxLine, Mechanisms: mechs, PlainText: userPass, Replies: replies}),
		userPass: userPass,
		apop:     slices.Contains(methods, "apop"),
	}
	var stls []string
	if st.StartTLSOffered() {
		stls = []string{"STLS"}
	}
	st.capa[engine.Plain] = capabilities(caps, mechs, st.userPass, stls...)
	st.capa[engine.TLSFirst] = capabilities(caps, nil, false, "STLS")
	st.capa[engine.Secure] = capabilities(caps, mechs, st.userPass)
	s.settled = st
	return st.Settings
}

// capabilities returns a CAPA list: the configured capabilities without
// USER when USER/PASS is not allowed, a SASL line for the mechanisms, then
// extra.
func capabilities(caps, mechanisms []string, userPass bool, extra ...string) []string {
	var list []string
	for _, c := range caps {
		if !strings.EqualFold(c, "USER") || userPass {
			list = append(list, c)
		}
	}
	if len(mechanisms) > 0 {
		list = append(list, "SASL "+strings.Join(mechanisms, " "))
	}
	return append(list, extra...)
}
