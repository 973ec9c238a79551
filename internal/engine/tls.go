package engine

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/openssl"
	"github.com/mailproxy/mailproxy/session"
)

// Errors of the client certificate check that end a session.
var (
	ErrNoClientCert  = errors.New("mail: client sent no required SSL certificate")
	ErrBadClientCert = errors.New("mail: client SSL certificate verify error")
)

// handshake runs the TLS handshake of tc within the client's time (see
// Conn.arm) and checks the client certificate. The session's TLS facts
// are kept for the Authenticator: the version and suite in OpenSSL's
// names, as nginx gives them, and the client certificate's.
func (c *Conn) handshake(tc *tls.Conn) error {
	tc.SetDeadline(c.deadline)
	if err := tc.Handshake(); err != nil {
		c.end.meter.handshake(err)
		c.end.meter.timedOut(err)
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.end.meter.handshake(nil)
	tc.SetDeadline(time.Time{})
	state := tc.ConnectionState()
	c.tls = c.cfg.TLS.clientInfo(state.PeerCertificates)
	c.tls.Protocol = openssl.ProtocolName(state.Version)
	c.tls.Cipher = openssl.SuiteName(state.CipherSuite)
	// At debug, as nginx logs "SSL: TLSv1.3, cipher: …"; the attributes
	// are named as nginx's variables.
	if c.Log.Enabled(bg, errorlog.LevelDebug) {
		c.Log.LogAttrs(bg, errorlog.LevelDebug, "TLS handshake done",
			slog.String("ssl_protocol", c.tls.Protocol), slog.String("ssl_cipher", c.tls.Cipher),
			slog.Bool("ssl_session_reused", state.DidResume), slog.String("ssl_client_verify", c.tls.Verify))
	}
	return c.cfg.TLS.refuse(state.PeerCertificates, c.tls.Verify)
}

// clientInfo checks the client's chain and returns the facts nginx passes
// about it.
func (t *serverTLS) clientInfo(chain []*x509.Certificate) *auth.TLSInfo {
	if t.Verify == session.VerifyOff {
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
func (t *serverTLS) refuse(chain []*x509.Certificate, verify string) error {
	reason, failed := strings.CutPrefix(verify, "FAILED:")
	switch {
	case t.Verify == session.VerifyOff:
		return nil
	case failed && !(t.Verify == session.VerifyOptionalNoCA && issuerUnknown[reason]):
		return fmt.Errorf("%w: %s", ErrBadClientCert, reason)
	case len(chain) == 0 && t.Verify == session.VerifyOn:
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
func (t *serverTLS) verify(chain []*x509.Certificate) string {
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
func (t *serverTLS) checkChains(chains [][]*x509.Certificate) string {
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
func (t *serverTLS) revoked(chain []*x509.Certificate) bool {
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
	case c.cfg.TLS != nil && c.cfg.TLS.StartTLS == session.StartTLSOnly:
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
		c.clientFailed(err)
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
// Each failure is logged at level info, as nginx logs them.
func (c *Conn) startSecure(tc *tls.Conn) error {
	err := c.handshake(tc)
	if err != nil {
		c.w.Reset(tc) // nothing queued before goes out now
		c.tls = nil
	}
	var ne net.Error
	switch {
	case errors.Is(err, ErrNoClientCert):
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client sent no required SSL certificate")
		c.CloseWith(c.replies.NoClientCert)
	case errors.Is(err, ErrBadClientCert):
		reason := strings.TrimPrefix(err.Error(), ErrBadClientCert.Error()+": ")
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client SSL certificate verify error", slog.String("reason", reason))
		c.CloseWith(c.replies.BadClientCert)
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "peer closed connection in SSL handshake", sslHandshaking)
		c.Conn.Close()
	case errors.As(err, &ne) && ne.Timeout():
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "client timed out", sslHandshaking)
		c.Conn.Close()
	default:
		c.Log.LogAttrs(bg, errorlog.LevelInfo, "TLS handshake failed", slog.Any("err", err), sslHandshaking)
		c.Conn.Close()
	}
	return err
}

// sslHandshaking is the action of the handshake's log lines, as nginx
// words it.
var sslHandshaking = slog.String(errorlog.ActionKey, "SSL handshaking")

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
