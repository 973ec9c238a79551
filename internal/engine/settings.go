// Package engine is the machinery the IMAP, POP3 and SMTP servers share:
// the accept loop and life cycle ([Server]), a client connection in the
// dialogue before proxying with its limits ([Conn]), TLS with nginx's
// client certificate checks, the SASL exchange, the Authenticator's
// verdict, and the step from a backend login to the relay.
//
// A protocol package keeps only its own words: its commands, its replies
// ([Replies]) and its backend login.
package engine

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/session"
)

// Protocol is what a protocol server tells the engine about itself.
type Protocol struct {
	// Name is the protocol's name, "imap", "pop3" or "smtp": the ALPN
	// protocol of its TLS sessions.
	Name string
	// MaxLine bounds a command line, CR LF included.
	MaxLine int
	// Mechanisms are the SASL mechanisms configured, announced and
	// accepted.
	Mechanisms []string
	// PlainText accepts the PLAIN and LOGIN mechanisms even when they are
	// not configured, as nginx does wherever a clear-text login is allowed:
	// they ask nothing a LOGIN or USER/PASS command would not.
	PlainText bool
	// Replies are the protocol's words for what the engine answers.
	Replies Replies
}

// Settings are a protocol server's session.Config with the defaults
// applied, fixed when the server first serves.
type Settings struct {
	session.Config
	// TLS, shadowing Config.TLS, holds the TLS settings made ready for
	// serving; nil without TLS.
	TLS *serverTLS
	// MaxLine bounds a command line, CR LF included.
	MaxLine int
	// Mechanisms are the SASL mechanisms announced in each TLS state.
	Mechanisms Announced[[]string]
	// plainText: see Protocol.PlainText.
	plainText bool
	// protocol is the protocol's name, for Metrics.
	protocol string
	// Replies are the protocol's words for what the engine answers.
	Replies Replies
	// drain ends when the server starts to shut down: a session that has
	// sent its last reply then closes without waiting for the client's
	// close (see Conn.CloseWith). Nil never ends.
	drain context.Context
}

// Settle returns cfg with every zero field set to its default, for the
// protocol p.
func Settle(cfg session.Config, p Protocol) *Settings {
	if cfg.ServerName == "" {
		cfg.ServerName = hostname()
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, session.DefaultTimeout)
	cfg.MaxErrors = cmp.Or(cfg.MaxErrors, session.DefaultMaxErrors)
	cfg.MaxCommands = cmp.Or(cfg.MaxCommands, session.DefaultMaxCommands)
	cfg.ProxyTimeout = cmp.Or(cfg.ProxyTimeout, session.DefaultProxyTimeout)
	cfg.ProxyBuffer = cmp.Or(cfg.ProxyBuffer, session.DefaultProxyBuffer)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Auth != nil {
		cfg.Auth = &limitedAuth{next: cfg.Auth, refusal: p.Replies.FailedLogins}
	}
	return &Settings{
		Config:     cfg,
		TLS:        settleTLS(cfg.TLS, p.Name),
		MaxLine:    max(p.MaxLine, 16),
		Mechanisms: mechanismsByState(p.Mechanisms),
		plainText:  p.PlainText,
		protocol:   p.Name,
		Replies:    p.Replies,
	}
}

// hostname returns the machine's host name, or "localhost" when it cannot
// be found: the default server_name.
func hostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "localhost"
	}
	return name
}

// StartTLSOffered reports whether STARTTLS is offered on plain
// connections.
func (s *Settings) StartTLSOffered() bool {
	return s.TLS != nil && s.TLS.StartTLS != session.StartTLSOff
}

// mechanismsByState returns the SASL mechanisms to announce in each TLS
// state: none while TLS must come first (starttls only), all of them
// otherwise. EXTERNAL is among them with or without TLS, as in nginx: the
// Authenticator, which sees whether there is a verified certificate,
// decides.
func mechanismsByState(all []string) Announced[[]string] {
	var a Announced[[]string]
	a[Plain], a[Secure] = all, all
	return a
}

// accepts reports whether the SASL mechanism mech may be used in state.
func (s *Settings) accepts(state TLSState, mech string) bool {
	switch {
	case slices.Contains(s.Mechanisms[state], mech):
		return true
	case state == TLSFirst:
		return false
	}
	return s.plainText && (mech == auth.SASLPlain || mech == auth.SASLLogin)
}

// serverTLS is a server's TLS settings ready for serving: a tls.Config
// that asks for client certificates as Verify says, and the pool they are
// checked against.
type serverTLS struct {
	session.TLS
	roots *x509.CertPool // ClientCAs and TrustedCAs
}

// settleTLS makes t ready for serving the protocol named alpn. Nil, or a
// TLS without a Config, gives nil.
func settleTLS(t *session.TLS, alpn string) *serverTLS {
	if t == nil || t.Config == nil {
		return nil
	}
	s := &serverTLS{TLS: *t}
	s.Config = t.Config.Clone()
	if len(s.Config.NextProtos) == 0 && alpn != "" {
		// As nginx's ngx_mail_ssl_alpn_select: a client offering ALPN
		// without the protocol is refused in the handshake with
		// no_application_protocol (RFC 7301, the ALPACA defence), which
		// crypto/tls does once NextProtos is set; a client offering it
		// gets it selected, one offering none is served.
		s.Config.NextProtos = []string{alpn}
	}
	s.Config.ClientAuth = tls.NoClientCert
	s.VerifyDepth = cmp.Or(s.VerifyDepth, 1)
	if s.Verify == session.VerifyOff {
		return s
	}
	s.Config.ClientAuth = tls.RequestClientCert
	s.roots = x509.NewCertPool()
	for _, ca := range slices.Concat(s.ClientCAs, s.TrustedCAs) {
		s.roots.AddCert(ca)
	}
	if len(s.ClientCAs) > 0 {
		s.Config.ClientCAs = x509.NewCertPool()
		for _, ca := range s.ClientCAs {
			s.Config.ClientCAs.AddCert(ca)
		}
	}
	return s
}

// Or returns v, or def when v is nil: a list option's default.
func Or[T any](v, def []T) []T {
	if v == nil {
		return def
	}
	return v
}

// OrPositive returns v when it is positive, else def: a size option's
// default.
func OrPositive(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// saslMethods maps the login methods of the *_auth directives to the SASL
// mechanism each offers, in the order nginx announces them whatever order
// the directive lists them in.
var saslMethods = []struct{ method, mechanism string }{
	{"plain", auth.SASLPlain},
	{"login", auth.SASLLogin},
	{"cram-md5", auth.SASLCRAMMD5},
	{"external", auth.SASLExternal},
}

// SASLMechanisms returns the SASL mechanisms that the configured login
// methods offer, in nginx's order: PLAIN, LOGIN, CRAM-MD5, EXTERNAL.
// Methods that are no SASL mechanism (apop, none) offer none.
func SASLMechanisms(methods []string) []string {
	var mechs []string
	for _, m := range saslMethods {
		if slices.ContainsFunc(methods, func(method string) bool { return strings.EqualFold(method, m.method) }) {
			mechs = append(mechs, m.mechanism)
		}
	}
	return mechs
}
