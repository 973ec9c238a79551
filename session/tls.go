package session

import (
	"crypto/tls"
	"crypto/x509"
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
// the Authenticator: the server serves a copy of Config whose ClientAuth
// follows Verify.
type TLS struct {
	// Config holds the certificates and the handshake parameters. It must
	// have a certificate (Certificates or GetCertificate). Its NextProtos,
	// when empty, is the protocol's name ("imap", "pop3" or "smtp"), as in
	// nginx: a client that offers ALPN without that name is refused in the
	// handshake (no_application_protocol alert), against cross-protocol
	// attacks (ALPACA). A Config that GetConfigForClient returns is used
	// as it is.
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
}
