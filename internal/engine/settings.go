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
	// MaxLine bounds a command line, CR LF included.
	MaxLine int
	// Mechanisms are the SASL mechanisms configured; EXTERNAL is offered
	// only over TLS.
	Mechanisms []string
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
	// Mechanisms are the SASL mechanisms offered in each TLS state.
	Mechanisms Announced[[]string]
	// Replies are the protocol's words for what the engine answers.
	Replies Replies
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
	return &Settings{
		Config:     cfg,
		TLS:        settleTLS(cfg.TLS),
		MaxLine:    max(p.MaxLine, 16),
		Mechanisms: mechanismsByState(p.Mechanisms),
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

// mechanismsByState returns the SASL mechanisms to offer in each TLS state:
// EXTERNAL only over TLS, and none while TLS must come first.
func mechanismsByState(all []string) Announced[[]string] {
	var a Announced[[]string]
	a[Plain] = slices.DeleteFunc(slices.Clone(all), func(m string) bool { return m == auth.SASLExternal })
	a[Secure] = all
	return a
}

// serverTLS is a server's TLS settings ready for serving: a tls.Config
// that asks for client certificates as Verify says, and the pool they are
// checked against.
type serverTLS struct {
	session.TLS
	roots *x509.CertPool // ClientCAs and TrustedCAs
}

// settleTLS makes t ready for serving. Nil, or a TLS without a Config,
// gives nil.
func settleTLS(t *session.TLS) *serverTLS {
	if t == nil || t.Config == nil {
		return nil
	}
	s := &serverTLS{TLS: *t}
	s.Config = t.Config.Clone()
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

// SASLMethods maps the login methods of imap_auth and smtp_auth to the SASL
// mechanism each offers.
var SASLMethods = map[string][]string{
	"plain":    {auth.SASLPlain},
	"login":    {auth.SASLLogin},
	"cram-md5": {auth.SASLCRAMMD5},
	"external": {auth.SASLExternal},
}

// MechanismsOf returns the SASL mechanisms that the configured login
// methods offer, in their order, as a protocol's table maps them; methods
// the table lacks offer none.
func MechanismsOf(methods []string, table map[string][]string) []string {
	var mechs []string
	for _, m := range methods {
		mechs = append(mechs, table[strings.ToLower(m)]...)
	}
	return mechs
}
