package session

import "time"

// Metrics counts what the sessions of a server do, for monitoring: set in
// Config, it is asked once for each listener the server serves. The
// metrics package's Collector is one, which exports the counts to
// Prometheus. Nil counts nothing, at the cost of a nil check per event.
type Metrics interface {
	// Listener returns what counts the sessions accepted on one listener.
	// protocol is the server's, "imap", "pop3" or "smtp"; addr is the
	// listener's address, as nginx names the server in its logs
	// ("0.0.0.0:143"). The servers of a reloaded configuration ask again
	// for the addresses they keep, and should get the same counts.
	Listener(protocol, addr string) ListenerMetrics
}

// ListenerMetrics counts the sessions of one listener. Its methods are
// called by every session, concurrently, and must return quickly. None of
// them is given a user name or a credential.
type ListenerMetrics interface {
	// Opened counts a connection accepted. Closed follows once, when its
	// session ends: limit is the limit that ended it, or "" when none did.
	Opened()
	Closed(limit Limit)
	// TLSHandshake counts a TLS handshake with a client, on a listen …
	// ssl or after STARTTLS, and whether it succeeded.
	TLSHandshake(ok bool)
	// Auth counts a call of the Authenticator: how long it took and how
	// it ended.
	Auth(took time.Duration, outcome AuthOutcome)
	// BackendConnected observes how long a connection to a backend took
	// to open.
	BackendConnected(took time.Duration)
	// BackendFailed counts a backend that a logged-in session could not
	// be proxied to, and why.
	BackendFailed(why BackendFailure)
	// Relayed counts the bytes a relayed session moved each way, pending
	// bytes included, when the session ends.
	Relayed(toBackend, toClient int64)
}

// Limit names a limit that ended a session, after the directive that
// sets it where there is one.
type Limit string

// Limits reported to [ListenerMetrics.Closed].
const (
	LimitTimeout      Limit = "timeout"       // the client's Timeout ran out before the relay (timeout)
	LimitMaxErrors    Limit = "max_errors"    // MaxErrors protocol errors (max_errors)
	LimitMaxCommands  Limit = "max_commands"  // MaxCommands before proxying (max_commands)
	LimitLineTooLong  Limit = "line_too_long" // a line beyond the client buffer (imap_client_buffer, smtp_client_buffer)
	LimitProxyTimeout Limit = "proxy_timeout" // nothing relayed for ProxyTimeout (proxy_timeout)
	// LimitConnections: refused beyond a Limiter's bound
	// (mailproxy.Proxy.MaxConnections).
	LimitConnections Limit = "max_connections"
)

// AuthOutcome is how a call of the Authenticator ended.
type AuthOutcome string

// Outcomes reported to [ListenerMetrics.Auth]. The last four are errors:
// the Authenticator could not decide.
const (
	AuthAccepted AuthOutcome = "accepted" // the login is accepted, with a backend
	AuthRefused  AuthOutcome = "refused"  // the login is refused
	AuthTimeout  AuthOutcome = "timeout"  // no answer within Timeout (or the auth service's own timeout)
	AuthConnect  AuthOutcome = "connect"  // the auth service could not be reached
	AuthInvalid  AuthOutcome = "invalid"  // an answer that cannot be used (accepted without a backend, …)
	AuthError    AuthOutcome = "error"    // any other error
)

// BackendFailure says why a backend could not be used.
type BackendFailure string

// Failures reported to [ListenerMetrics.BackendFailed].
const (
	BackendRefused       BackendFailure = "refused"        // the connection was refused
	BackendTimeout       BackendFailure = "timeout"        // the connection did not open within Timeout
	BackendConnect       BackendFailure = "connect"        // any other connection error
	BackendProxyProtocol BackendFailure = "proxy_protocol" // the PROXY protocol header could not be sent
	BackendLogin         BackendFailure = "login"          // the backend refused or broke off the login
)
