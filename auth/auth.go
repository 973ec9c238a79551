// Package auth decides who a mail client is and which backend serves it.
//
// The protocol packages (imap, pop3, smtp) consume an [Authenticator]: once a
// client has given its credentials, the session builds a [Request] with
// everything known about the client and asks the Authenticator for a
// [Result]. The Result either names the backend to proxy to, or refuses the
// login with a message the client will see. An error return means the
// decision could not be made at all (the auth service is down, a database
// timed out) and is reported to the client as a temporary failure.
package auth

import (
	"context"
	"errors"
	"net"
	"time"
)

// Authenticator decides whether a login succeeds and where the session goes.
//
// Implementations must be safe for concurrent use. They should honour ctx:
// the proxy cancels it when the client goes away or the server shuts down.
type Authenticator interface {
	Authenticate(ctx context.Context, req *Request) (*Result, error)
}

// AuthenticatorFunc adapts an ordinary function to the Authenticator
// interface.
type AuthenticatorFunc func(ctx context.Context, req *Request) (*Result, error)

// Authenticate calls f(ctx, req).
func (f AuthenticatorFunc) Authenticate(ctx context.Context, req *Request) (*Result, error) {
	return f(ctx, req)
}

var _ Authenticator = AuthenticatorFunc(nil)

// Method is the way a client proved who it is, named as nginx's
// Auth-Method header names it.
type Method string

// The login methods.
const (
	MethodPlain    Method = "plain"    // IMAP LOGIN, POP3 USER/PASS, SASL PLAIN
	MethodLogin    Method = "login"    // SASL LOGIN (sent to auth_http as plain)
	MethodAPOP     Method = "apop"     // POP3 APOP: Password holds the digest
	MethodCRAMMD5  Method = "cram-md5" // SASL CRAM-MD5: Password holds the digest
	MethodExternal Method = "external" // SASL EXTERNAL: identity from the TLS client certificate
	MethodNone     Method = "none"     // SMTP without authentication (routing by recipient)
)

// Request is everything the proxy knows about a login attempt.
type Request struct {
	Protocol string // "imap", "pop3" or "smtp"
	Method   Method
	User     string
	// Password is the clear-text password for plain and login, or the
	// client's digest for apop and cram-md5. It must never be logged.
	Password string
	// Salt is the challenge the client answered (APOP, CRAM-MD5).
	Salt string
	// Attempt counts login attempts in this session, starting at 1.
	Attempt int

	ClientAddr net.Addr // the real client address (after PROXY protocol)
	// ClientHost is the client's confirmed host name, "[UNAVAILABLE]" or
	// "[TEMPUNAVAIL]" when a resolver is configured, empty otherwise.
	ClientHost string
	LocalAddr  net.Addr // the proxy address the client connected to
	ServerName string   // server_name of the server block

	// SMTP envelope facts, known with MethodNone.
	SMTPHelo string
	SMTPFrom string
	SMTPTo   []string

	// TLS describes the client's TLS session; nil without TLS.
	TLS *TLSInfo
	// Proxy holds the addresses of a PROXY protocol header; nil without.
	Proxy *ProxyInfo
}

// TLSInfo holds the facts nginx passes about a client's TLS session, in
// nginx's formats.
type TLSInfo struct {
	// Protocol is the TLS version as OpenSSL names it, "TLSv1.2" or
	// "TLSv1.3" (Auth-SSL-Protocol). It and Cipher are known in every TLS
	// session, whether client certificates are asked for or not.
	Protocol string
	// Cipher is the cipher suite as OpenSSL names it (Auth-SSL-Cipher):
	// "ECDHE-RSA-AES128-GCM-SHA256" with TLS 1.2, "TLS_AES_256_GCM_SHA384"
	// with TLS 1.3.
	Cipher string
	// Verify is the client certificate check: "SUCCESS", "FAILED:reason"
	// or "NONE". Empty when client certificates are not asked for.
	Verify      string
	Subject     string // the certificate's subject DN
	Issuer      string // the certificate's issuer DN
	Serial      string // serial number in hex
	Fingerprint string // SHA-1 of the DER certificate in hex
	// Certificate is the client certificate in PEM, empty when none was
	// given.
	Certificate string
}

// ProxyInfo holds the addresses a PROXY protocol header announced.
type ProxyInfo struct {
	Source      net.Addr // the client as the load balancer saw it
	Destination net.Addr // the address the client connected to
}

// Result is the Authenticator's decision.
//
// A successful Result has an empty Error and a Backend. A refused login has
// Error set to the message the client sees.
type Result struct {
	// Backend is the host:port to proxy to; the host may be a name.
	Backend string
	// User and Password, when not empty, replace the client's credentials
	// in the backend login. APOP and CRAM-MD5 need Password, since the
	// proxy never learns the clear-text password from the client.
	User     string
	Password string

	// Error refuses the login with this message.
	Error string
	// Wait, with Error, lets the client try again after this delay;
	// without it the connection is closed after the error.
	Wait time.Duration
	// SMTPCode replaces the default SMTP reply code, e.g. "535 5.7.8".
	SMTPCode string
}

// OK reports whether the Result accepts the login.
func (r *Result) OK() bool { return r.Error == "" }

// ErrNoPassword is returned by [Result.BackendLogin] when the backend
// password is unknown: the client proved itself with a digest (APOP,
// CRAM-MD5) or a certificate, and the Result gave no Password.
var ErrNoPassword = errors.New("auth: no password for the backend login")

// BackendLogin returns the credentials for logging in to the backend: the
// Result's own when given, else the client's. SMTP backends need no
// password (they learn the user through XCLIENT).
func (r *Result) BackendLogin(req *Request) (user, password string, err error) {
	user, password = r.User, r.Password
	if user == "" {
		user = req.User
	}
	switch {
	case password != "":
	case clearText(req.Method):
		password = req.Password // the client's, possibly empty
	case req.Protocol != "smtp":
		return "", "", ErrNoPassword
	}
	return user, password, nil
}

// ErrUnavailable is returned (wrapped) when an Authenticator cannot decide,
// for example when none is configured. Sessions report it to the client as
// a temporary failure.
var ErrUnavailable = errors.New("auth: authentication service unavailable")
