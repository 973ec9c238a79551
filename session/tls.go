package session

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/mailproxy/mailproxy/auth"
)

// StartTLS says whether a server offers STARTTLS (IMAP, SMTP) or STLS
// (POP3): the starttls directive.
type StartTLS int8

// StartTLS values.
const (
	StartTLSOff  StartTLS = iota // not offered
	StartTLSOn                   // offered
	StartTLSOnly                 // offered, and required before any login
)

// VerifyClient is the ssl_verify_client directive: whether client
// certificates are asked for, and what a failed check does.
type VerifyClient int8

// VerifyClient values.
const (
	VerifyOff VerifyClient = iota // not asked for
	// VerifyOn requires a valid certificate: a session without one is
	// refused with the protocol's error.
	VerifyOn
	// VerifyOptional asks for a certificate; a session that sends an
	// invalid one is refused, one that sends none goes on.
	VerifyOptional
	// VerifyOptionalNoCA asks for a certificate and reports the check to
	// the Authenticator without refusing anything.
	VerifyOptionalNoCA
)

// TLS holds a server's TLS settings: the ssl_* directives and starttls.
//
// Client certificates are checked after the handshake, as nginx does, so
// that a failed check can be answered in the mail protocol and reported to
// the Authenticator: Config.ClientAuth is replaced according to Verify.
type TLS struct {
	// Config holds the certificates and the handshake parameters. It must
	// have a certificate (Certificates or GetCertificate).
	Config *tls.Config
	// StartTLS offers the upgrade on plain connections (starttls).
	StartTLS StartTLS

	// Verify asks for client certificates (ssl_verify_client).
	Verify VerifyClient
	// VerifyDepth bounds a client certificate chain: the number of
	// certificates above the client's own, the root included
	// (ssl_verify_depth). Zero means 1.
	VerifyDepth int
	// ClientCAs verify client certificates, and their names are sent to
	// the client in the certificate request (ssl_client_certificate).
	ClientCAs []*x509.Certificate
	// TrustedCAs verify client certificates without being named to the
	// client (ssl_trusted_certificate).
	TrustedCAs []*x509.Certificate
	// CRLs list revoked client certificates (ssl_crl). A certificate
	// issued by a CA that has a CRL here is checked against it.
	CRLs []*x509.RevocationList

	roots *x509.CertPool // ClientCAs and TrustedCAs, once settled
}

// settled returns a copy of t ready for serving: a Config that asks for
// client certificates as Verify says, and the pool they are checked
// against. Nil stays nil.
func (t *TLS) settled() *TLS {
	if t == nil || t.Config == nil {
		return nil
	}
	s := *t
	s.Config = t.Config.Clone()
	s.Config.ClientAuth = tls.NoClientCert
	s.VerifyDepth = orDefault(s.VerifyDepth, 1)
	if s.Verify != VerifyOff {
		s.Config.ClientAuth = tls.RequestClientCert
		s.roots = x509.NewCertPool()
		for _, ca := range append(append([]*x509.Certificate(nil), s.ClientCAs...), s.TrustedCAs...) {
			s.roots.AddCert(ca)
		}
		if len(s.ClientCAs) > 0 {
			s.Config.ClientCAs = x509.NewCertPool()
			for _, ca := range s.ClientCAs {
				s.Config.ClientCAs.AddCert(ca)
			}
		}
	}
	return &s
}

// Errors of the client certificate check that end a session.
var (
	ErrNoClientCert  = errors.New("mail: client sent no required SSL certificate")
	ErrBadClientCert = errors.New("mail: client SSL certificate verify error")
)

// handshake runs the TLS handshake of tc within the server's timeout and
// checks the client certificate. The session's TLS facts are kept for the
// Authenticator.
func (c *Conn) handshake(tc *tls.Conn) error {
	tc.SetDeadline(time.Now().Add(c.cfg.Timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	state := tc.ConnectionState()
	c.tls = c.cfg.TLS.clientInfo(state.PeerCertificates)
	return c.cfg.TLS.refuse(state.PeerCertificates, c.tls.Verify)
}

// clientInfo checks the client's chain and returns the facts nginx passes
// about it.
func (t *TLS) clientInfo(chain []*x509.Certificate) *auth.TLSInfo {
	if t.Verify == VerifyOff {
		return &auth.TLSInfo{}
	}
	if len(chain) == 0 {
		return &auth.TLSInfo{Verify: "NONE"}
	}
	return auth.NewTLSInfo(chain[0], t.verify(chain))
}

// refuse returns the error that ends a session after the certificate
// check verify, or nil when the session goes on. As in nginx,
// optional_no_ca forgives only a chain that does not reach a trusted CA.
func (t *TLS) refuse(chain []*x509.Certificate, verify string) error {
	reason, failed := strings.CutPrefix(verify, "FAILED:")
	switch {
	case t.Verify == VerifyOff:
		return nil
	case failed && !(t.Verify == VerifyOptionalNoCA && issuerUnknown[reason]):
		return fmt.Errorf("%w: %s", ErrBadClientCert, reason)
	case len(chain) == 0 && t.Verify == VerifyOn:
		return ErrNoClientCert
	}
	return nil
}

// issuerUnknown are the verification failures that optional_no_ca
// forgives (nginx's ngx_ssl_verify_error_optional).
var issuerUnknown = map[string]bool{
	"self-signed certificate":                      true,
	"self-signed certificate in certificate chain": true,
	"unable to get issuer certificate":             true,
	"unable to get local issuer certificate":       true,
	"unable to verify the first certificate":       true,
}

// verify checks a client chain (the client's certificate first, then the
// intermediates it sent) and returns nginx's Auth-SSL-Verify value:
// "SUCCESS" or "FAILED:" and OpenSSL's words for the reason.
func (t *TLS) verify(chain []*x509.Certificate) string {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "FAILED:" + opensslReason(err, leaf)
	}
	if reason := t.checkChains(chains); reason != "" {
		return "FAILED:" + reason
	}
	return "SUCCESS"
}

// checkChains applies the depth limit and the CRLs to the verified chains,
// returning OpenSSL's words for the first failure, or "" when a chain
// passes.
func (t *TLS) checkChains(chains [][]*x509.Certificate) string {
	reason := ""
	for _, chain := range chains {
		switch {
		case len(chain)-1 > t.VerifyDepth:
			reason = "certificate chain too long"
		case t.revoked(chain):
			reason = "certificate revoked"
		default:
			return ""
		}
	}
	return reason
}

// revoked reports whether a certificate of chain is on a CRL of its
// issuer.
func (t *TLS) revoked(chain []*x509.Certificate) bool {
	for i, cert := range chain[:len(chain)-1] {
		issuer := chain[i+1]
		for _, crl := range t.CRLs {
			if crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
					return true
				}
			}
		}
	}
	return false
}

// opensslReason words a Go verification error as OpenSSL's
// X509_verify_cert_error_string does, which is what auth services written
// for nginx expect after "FAILED:".
func opensslReason(err error, leaf *x509.Certificate) string {
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &invalid):
		switch invalid.Reason {
		case x509.Expired:
			if time.Now().Before(leaf.NotBefore) {
				return "certificate is not yet valid"
			}
			return "certificate has expired"
		case x509.IncompatibleUsage:
			return "unsupported certificate purpose"
		case x509.TooManyIntermediates:
			return "certificate chain too long"
		}
		return "invalid CA certificate"
	case errors.As(err, &unknown):
		if leaf.CheckSignatureFrom(leaf) == nil {
			return "self-signed certificate"
		}
		return "unable to get local issuer certificate"
	}
	return "certificate signature failure"
}

// TLSState is where a session stands with TLS, which decides what a
// server announces and allows.
type TLSState int

// TLSState values.
const (
	Plain    TLSState = iota // no TLS; STARTTLS offered or not
	TLSFirst                 // no TLS, and no login before STARTTLS (starttls only)
	Secure                   // TLS is active
	numTLSStates
)

// TLSState returns where the session stands with TLS.
func (c *Conn) TLSState() TLSState {
	switch {
	case c.tls != nil:
		return Secure
	case c.cfg.TLS != nil && c.cfg.TLS.StartTLS == StartTLSOnly:
		return TLSFirst
	}
	return Plain
}

// CanStartTLS reports whether STARTTLS (or STLS) is offered now: the
// server has a certificate and starttls, and TLS is not active yet.
func (c *Conn) CanStartTLS() bool {
	return c.cfg.StartTLSOffered() && c.tls == nil
}

// Announced holds what a server announces (a capability list, the SASL
// mechanisms) in each TLS state.
type Announced[T any] [numTLSStates]T

// For returns what is announced to the session c.
func (a *Announced[T]) For(c *Conn) T { return a[c.TLSState()] }

// StartTLS sends reply (the go-ahead), then runs the TLS handshake on the
// connection. Whatever the client sent after the command, before the
// handshake, is discarded: a command injected in clear text must never run
// as if it had come through TLS. A failed handshake or certificate check
// ends the session: StartTLS closes the connection (with the protocol's
// reply when the handshake completed) and returns the error.
func (c *Conn) StartTLS(reply string) error {
	c.Reply("%s", reply)
	if err := c.Flush(); err != nil {
		return err
	}
	tc := tls.Server(c.Conn, c.cfg.TLS.Config)
	c.Conn = tc
	c.r.Reset(tc) // drops what was read past the command: the injected bytes
	c.w.Reset(tc)
	return c.startSecure(tc)
}

// startSecure runs the handshake on a new TLS connection and answers a
// failed certificate check; other failures close the connection silently.
func (c *Conn) startSecure(tc *tls.Conn) error {
	err := c.handshake(tc)
	if err != nil {
		c.w.Reset(tc) // nothing queued before goes out now
		c.tls = nil
	}
	switch {
	case errors.Is(err, ErrNoClientCert):
		c.Log.Info("session refused", "err", err)
		c.Close(c.replies.NoClientCert)
	case errors.Is(err, ErrBadClientCert):
		c.Log.Info("session refused", "err", err)
		c.Close(c.replies.BadClientCert)
	case err != nil:
		c.Log.Info("TLS handshake failed", "err", err)
		c.Conn.Close()
	}
	return err
}

// TLS returns the facts of the client's TLS session for the Authenticator,
// or nil without TLS.
func (c *Conn) TLS() *auth.TLSInfo { return c.tls }

// rawConn returns the connection under TLS, if any.
func rawConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// Mechanisms returns the SASL mechanisms to offer in each TLS state, from
// the configured ones (SASL names): EXTERNAL only over TLS, and none while
// TLS must come first.
func Mechanisms(all []string) Announced[[]string] {
	var a Announced[[]string]
	a[Plain] = slices.DeleteFunc(slices.Clone(all), func(m string) bool { return m == auth.SASLExternal })
	a[Secure] = all
	return a
}

// StartTLSOffered reports whether the settled Config offers STARTTLS on
// plain connections.
func (c *Config) StartTLSOffered() bool {
	return c.TLS != nil && c.TLS.StartTLS != StartTLSOff
}
