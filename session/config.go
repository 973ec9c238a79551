// Package session holds the settings that the IMAP, POP3 and SMTP servers
// share: those of nginx's mail core and proxy modules ([Config]), TLS
// ([TLS]) with session resumption ([Resumption]), the PROXY protocol's
// trusted peers ([RealIP]) and the host name lookup ([HostResolver]); and
// [Listener], through which a protocol server learns how the connections
// of a listener start.
//
// A program fills a Config inside an imap.Server, pop3.Server or
// smtp.Server. The machinery that runs the sessions is internal.
package session

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mailproxy/mailproxy/auth"
)

// Defaults that zero fields of [Config] stand for, as in nginx.
const (
	DefaultTimeout      = 60 * time.Second
	DefaultMaxErrors    = 5
	DefaultMaxCommands  = 1000
	DefaultProxyTimeout = 24 * time.Hour
	DefaultProxyBuffer  = 16 << 10
)

// Config holds the settings of one server block that every protocol uses.
// The zero value is usable: zero fields take the nginx defaults.
type Config struct {
	// ServerName is used in greetings, CRAM-MD5 challenges and the EHLO
	// sent to SMTP backends (server_name). Empty means the host name.
	ServerName string
	// Timeout bounds the dialogue with the client until proxying starts
	// (timeout), as nginx's timer does: it runs from the greeting to the
	// login, and again from each login that did not lead to the relay to
	// the next. A client is closed when it runs out whatever it sends
	// meanwhile (a line, a literal or a SASL response a byte at a time,
	// or command after command), or if it stops reading the replies. The
	// PROXY protocol header and the TLS handshake of an implicit TLS
	// listener have a Timeout each before the greeting, and the replies
	// to a login one of their own. Zero means 60s.
	Timeout time.Duration
	// MaxErrors is the number of protocol errors after which the
	// connection is closed (max_errors). Zero means 5; negative, no limit.
	MaxErrors int
	// MaxCommands is the number of commands allowed before the session is
	// proxied (max_commands). Zero means 1000; negative, no limit.
	MaxCommands int

	// Auth decides logins and routes sessions. Nil refuses every login
	// with a temporary failure.
	Auth auth.Authenticator
	// Logger receives the session logs. Nil means slog.Default().
	Logger *slog.Logger

	// ProxyTimeout is the idle timeout while relaying (proxy_timeout).
	// Zero means 24h.
	ProxyTimeout time.Duration
	// ProxyBuffer is the relay buffer size in bytes (proxy_buffer). Zero
	// means 16 KiB.
	ProxyBuffer int
	// PassErrorMessage passes the backend's login error text to the client
	// (proxy_pass_error_message).
	PassErrorMessage bool
	// SendProxyProtocol sends a PROXY protocol header with the client's
	// addresses to the backend: 1 for version 1 (proxy_protocol on), 2 for
	// the binary version 2; 0 sends none.
	SendProxyProtocol int

	// TLS enables implicit TLS listeners and STARTTLS; nil means neither
	// (a connection on an implicit TLS listener is then closed).
	TLS *TLS

	// RealIP says whose PROXY protocol headers set the client address
	// (set_real_ip_from), on listeners whose connections start with one.
	RealIP RealIP

	// Resolver finds the client's host name for the Authenticator
	// (Client-Host) and SMTP's XCLIENT NAME (resolver). The lookup starts
	// with the session and runs alongside the dialogue. Nil looks up
	// nothing.
	Resolver HostResolver

	// Metrics counts the sessions, per listener, for monitoring (ours;
	// see package metrics). Nil counts nothing.
	Metrics Metrics
}

// HostResolver finds a client's host name, confirmed by a forward lookup,
// or "[UNAVAILABLE]" / "[TEMPUNAVAIL]" as nginx says: *resolver.Resolver
// is one.
type HostResolver interface {
	ClientHost(ctx context.Context, ip netip.Addr) string
}

// ErrServerClosed is returned by the Serve method of a protocol server
// after Shutdown or Close.
var ErrServerClosed = errors.New("mail: server closed")

// Listener is a net.Listener that says how its connections start. A
// protocol server's Serve looks for it on the listener it is given: the
// listeners of a mailproxy.Proxy implement it (mailproxy.Listener), and
// a plain net.Listener serves plain connections.
type Listener interface {
	net.Listener
	// ImplicitTLS reports whether the connections start with a TLS
	// handshake (listen … ssl): the server runs it with its own TLS
	// settings.
	ImplicitTLS() bool
	// ProxyProtocol reports whether the connections start with a PROXY
	// protocol header (listen … proxy_protocol): the server reads it within
	// its Timeout and trusts it as its RealIP says.
	ProxyProtocol() bool
}

// Limiter is a Listener that bounds the sessions served at once: the
// listeners of a mailproxy.Proxy share its MaxConnections. A protocol
// server asks Admit before each session and calls Release when an
// admitted one ends; a connection not admitted is refused in the
// protocol's words (IMAP "* BYE", POP3 "-ERR", SMTP "421") and closed.
type Limiter interface {
	Admit() bool
	Release()
}

// RealIP says which peers may replace the client address with the one in
// their PROXY protocol header (set_real_ip_from). The zero value trusts
// none: the client address stays the peer's, and the header's is only
// reported alongside it.
type RealIP struct {
	From []netip.Prefix // trusted networks
	Unix bool           // trust peers on unix sockets ("unix:")
}

// Trusts reports whether peer may set the client address.
func (r RealIP) Trusts(peer net.Addr) bool {
	switch a := peer.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return false
		}
		for _, p := range r.From {
			if p.Contains(ip.Unmap()) {
				return true
			}
		}
	case *net.UnixAddr:
		return r.Unix
	}
	return false
}
