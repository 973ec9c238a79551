// Package pop3 is the POP3 side of the mail proxy: it speaks POP3 to a
// client until the client has authenticated, then relays the session to the
// backend the Authenticator chose.
package pop3

import (
	"net"
	"slices"
	"strings"

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
	// (USER/PASS and the SASL mechanisms PLAIN and LOGIN), "apop",
	// "cram-md5", "external". Nil means DefaultAuthMethods.
	AuthMethods []string

	session.Serving // Shutdown and Close
	settled         settings
}

// settings are a Server's fields with the defaults applied, fixed when it
// starts serving.
type settings struct {
	session.Config
	// capa is the CAPA list, and mechanisms the SASL mechanisms offered,
	// in each TLS state.
	capa       session.Announced[[]string]
	mechanisms session.Announced[[]string]
	userPass   bool // USER/PASS allowed
	apop       bool
}

// Serve accepts POP3 clients on l until l is closed or the Server is shut
// down. It may be called for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	return s.Run(l, s.settle, s.serveConn)
}

func (s *Server) settle() *session.Config {
	methods := s.AuthMethods
	if methods == nil {
		methods = DefaultAuthMethods
	}
	caps := s.Capabilities
	if caps == nil {
		caps = DefaultCapabilities
	}
	st := settings{
		Config:   s.Config.WithDefaults(),
		userPass: slices.Contains(methods, "plain"),
		apop:     slices.Contains(methods, "apop"),
	}
	var mechanisms []string
	for _, m := range methods {
		switch m {
		case "plain":
			mechanisms = append(mechanisms, "PLAIN", "LOGIN")
		case "cram-md5", "external":
			mechanisms = append(mechanisms, strings.ToUpper(m))
		}
	}
	st.mechanisms = session.Mechanisms(mechanisms)
	var stls []string
	if st.StartTLSOffered() {
		stls = []string{"STLS"}
	}
	st.capa[session.Plain] = capabilities(caps, st.mechanisms[session.Plain], st.userPass, stls...)
	st.capa[session.TLSFirst] = capabilities(caps, nil, false, "STLS")
	st.capa[session.Secure] = capabilities(caps, mechanisms, st.userPass)
	s.settled = st
	return &s.settled.Config
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
