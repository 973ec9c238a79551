package session

import (
	"errors"
	"net/netip"
)

// ClientLimiter is a Limiter that also bounds what one client address may
// do: the listeners of a mailproxy.Proxy implement it, with the Proxy's
// Config.ClientLimits. A protocol server asks AdmitClient once it knows the
// client's address (after a PROXY protocol header) and, when the client is
// admitted, calls ReleaseClient when the session ends; it asks AdmitLogin
// before each login the client tries and calls LoginFailed for each that
// its Authenticator refuses.
type ClientLimiter interface {
	Limiter
	// AdmitClient takes a place for a session of the client at addr, or
	// returns ErrTooManyConnections or ErrTooManyFailures.
	AdmitClient(addr netip.Addr) error
	// ReleaseClient gives an admitted session's place back.
	ReleaseClient(addr netip.Addr)
	// AdmitLogin returns ErrTooManyFailures while the client at addr may
	// not log in.
	AdmitLogin(addr netip.Addr) error
	// LoginFailed counts a login of the client at addr that the
	// Authenticator refused.
	LoginFailed(addr netip.Addr)
}

// Why a ClientLimiter refuses a client. A protocol server answers them in
// its own words: IMAP "* BYE" (or, to a login, "NO [UNAVAILABLE]"), POP3
// "-ERR [SYS/TEMP]", SMTP "421 4.7.0".
var (
	ErrTooManyConnections = errors.New("mail: too many connections from the client's address")
	ErrTooManyFailures    = errors.New("mail: too many failed logins from the client's address")
)
