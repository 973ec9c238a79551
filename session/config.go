// Package session holds what the IMAP, POP3 and SMTP handlers share: the
// per-server settings of the mail core and proxy modules ([Config]), the
// accept loop with graceful shutdown ([Loop]), and the per-connection
// plumbing that enforces the limits on unauthenticated clients ([Conn]).
//
// A program rarely uses this package directly beyond filling a Config
// inside an imap.Server, pop3.Server or smtp.Server.
package session

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/mailproxy/mailproxy/auth"
)

// Defaults applied by [Config.WithDefaults] to zero fields, as in nginx.
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
	// Timeout bounds each wait for the client until proxying starts
	// (timeout). Zero means 60s.
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

	// Resolver finds the client's host name for the Authenticator
	// (Client-Host) and SMTP's XCLIENT NAME (resolver). The lookup starts
	// with the session and runs alongside the dialogue. Nil looks up
	// nothing.
	Resolver HostResolver
}

// HostResolver finds a client's host name, confirmed by a forward lookup,
// or "[UNAVAILABLE]" / "[TEMPUNAVAIL]" as nginx says: *resolver.Resolver
// is one.
type HostResolver interface {
	ClientHost(ctx context.Context, ip netip.Addr) string
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.ServerName == "" {
		c.ServerName = Hostname()
	}
	c.Timeout = orDefault(c.Timeout, DefaultTimeout)
	c.MaxErrors = orDefault(c.MaxErrors, DefaultMaxErrors)
	c.MaxCommands = orDefault(c.MaxCommands, DefaultMaxCommands)
	c.ProxyTimeout = orDefault(c.ProxyTimeout, DefaultProxyTimeout)
	c.ProxyBuffer = orDefault(c.ProxyBuffer, DefaultProxyBuffer)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.TLS = c.TLS.settled()
	return c
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Hostname returns the machine's host name, or "localhost" when it cannot
// be found: the default server_name.
func Hostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "localhost"
	}
	return name
}
