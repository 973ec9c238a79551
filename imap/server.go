// Package imap is the IMAP side of the mail proxy: it speaks IMAP to a
// client until the client has authenticated, then relays the session to the
// backend the Authenticator chose.
package imap

import (
	"net"
	"slices"
	"strings"

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
// login until Auth is set).
type Server struct {
	session.Config

	// Capabilities are announced before login (imap_capabilities); nil
	// means DefaultCapabilities.
	Capabilities []string
	// AuthMethods are the login methods offered (imap_auth): "plain"
	// (LOGIN and AUTHENTICATE PLAIN), "login", "cram-md5", "external".
	// Nil means DefaultAuthMethods.
	AuthMethods []string
	// ClientBuffer bounds a command line (imap_client_buffer); zero means
	// DefaultClientBuffer.
	ClientBuffer int

	session.Serving // Shutdown and Close
	settled         settings
}

// settings are a Server's fields with the defaults applied, fixed when it
// starts serving.
type settings struct {
	session.Config
	// capabilities is the CAPABILITY line before login, and mechanisms
	// the SASL mechanisms offered, in each TLS state.
	capabilities session.Announced[string]
	mechanisms   session.Announced[[]string]
	clientBuffer int
}

// Serve accepts IMAP clients on l until l is closed or the Server is shut
// down. It may be called for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	return s.Run(l, s.settle, s.serveConn)
}

func (s *Server) settle() *session.Config {
	s.settled = settings{Config: s.Config.WithDefaults(), clientBuffer: s.ClientBuffer}
	if s.ClientBuffer <= 0 {
		s.settled.clientBuffer = DefaultClientBuffer
	}
	s.announce(orDefault(s.Capabilities, DefaultCapabilities), upper(orDefault(s.AuthMethods, DefaultAuthMethods)))
	return &s.settled.Config
}

// announce fixes the capabilities and mechanisms of each TLS state: EXTERNAL
// only over TLS; STARTTLS while it is offered; with starttls only, no AUTH=
// and LOGINDISABLED before TLS (RFC 9051).
func (s *Server) announce(caps, mechanisms []string) {
	st := &s.settled
	st.mechanisms = session.Mechanisms(mechanisms)
	var startTLS []string
	if st.StartTLSOffered() {
		startTLS = []string{"STARTTLS"}
	}
	st.capabilities[session.Plain] = capabilities(caps, st.mechanisms[session.Plain], startTLS...)
	st.capabilities[session.TLSFirst] = capabilities(caps, nil, "STARTTLS", "LOGINDISABLED")
	st.capabilities[session.Secure] = capabilities(caps, mechanisms)
}

func orDefault(v, def []string) []string {
	if v == nil {
		return def
	}
	return v
}

// capabilities returns a CAPABILITY list: the configured capabilities,
// what the proxy itself implements (ID, SASL-IR, LITERAL+ for the commands
// it reads), an AUTH= entry for each SASL mechanism, then extra.
func capabilities(caps, mechanisms []string, extra ...string) string {
	list := slices.Clone(caps)
	for _, c := range []string{"ID", "SASL-IR", "LITERAL+"} {
		list = appendNew(list, c)
	}
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

func upper(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToUpper(s)
	}
	return out
}
