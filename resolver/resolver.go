// Package resolver finds the host name of a mail client, as nginx's mail
// `resolver` directive does: the client's address is looked up by PTR, and
// a name counts only when a forward lookup of it (A for an IPv4 client,
// AAAA for an IPv6 one) contains the address again.
//
// The result is what nginx passes on in the Client-Host header of
// auth_http and in the NAME attribute of XCLIENT: the confirmed name,
// [Unavailable] when the address has no name or its name does not confirm,
// or [TempUnavailable] when the name servers could not say.
//
// The package carries its own DNS client (UDP, TCP when an answer is
// truncated, a random query ID and source port for every query, answers
// checked against the question) and a bounded cache of answers kept for
// their TTL. It follows CNAMEs, in one answer or by asking for the target,
// up to 8 links: a classless reverse delegation (RFC 2317) puts one before
// the PTR, which nginx does not follow, ending in a timeout.
package resolver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// What [Resolver.ClientHost] returns when there is no confirmed name, as
// nginx writes it.
const (
	// Unavailable: the address has no name, or its name does not map back
	// to the address.
	Unavailable = "[UNAVAILABLE]"
	// TempUnavailable: the name servers timed out or failed.
	TempUnavailable = "[TEMPUNAVAIL]"
)

// Defaults applied to zero fields of [Config].
const (
	DefaultTimeout   = 30 * time.Second
	DefaultCacheSize = 10000
)

// Errors returned by [Resolver.LookupHost], wrapped with the details.
var (
	// ErrNotFound means the name does not exist (NXDOMAIN, no PTR record)
	// or does not confirm (its addresses lack the client's).
	ErrNotFound = errors.New("resolver: host not found")
	// ErrTemporary means no answer could be had: a timeout, a server
	// failure, a refusal, an answer that does not unpack or does not
	// answer the question, a CNAME chain longer than 8 links or looping.
	ErrTemporary = errors.New("resolver: temporary failure")
)

// Config holds the settings of the resolver and resolver_timeout
// directives.
type Config struct {
	// Servers are the name servers, as the directive writes them:
	// "127.0.0.53", "[::1]:5353", "ns.example:53" (a host name is resolved
	// once by New with net.DefaultResolver). Port 53 when absent. They are
	// queried in turn, the next one taking over when one fails.
	Servers []string
	// Valid overrides the TTL of cached answers when > 0 (valid=).
	Valid time.Duration
	// NoIPv4 and NoIPv6 turn off the A and AAAA lookups that confirm a
	// name (ipv4=off, ipv6=off): a client of a family that is off never
	// gets a name. The zero value looks up both.
	NoIPv4, NoIPv6 bool
	// Timeout bounds a whole lookup, PTR and forward confirmation
	// (resolver_timeout). Zero means 30s.
	Timeout time.Duration
	// CacheSize is the number of answers kept. Zero means 10000; negative
	// turns the cache off.
	CacheSize int
	// Metrics counts the lookups, as Angie does for a status_zone. Nil
	// counts nothing.
	Metrics Metrics
}

// Resolver looks up the names of clients. It is safe for concurrent use.
type Resolver struct {
	servers []netip.AddrPort
	next    atomic.Uint32 // round robin over servers
	valid   time.Duration
	timeout time.Duration
	ipv4    bool
	ipv6    bool
	cache   *cache  // nil when off
	metrics Metrics // nil: not counted
	flights singleflight.Group
	now     func() time.Time

	base    context.Context // cancelled by Close
	cancel  context.CancelFunc
	mu      sync.Mutex // guards closed and the Add of running
	closed  bool
	running sync.WaitGroup // queries in flight
}

// New checks cfg and resolves the name servers given by name. [Resolver.Close]
// ends the queries still in flight.
func New(ctx context.Context, cfg Config) (*Resolver, error) {
	if cfg.NoIPv4 && cfg.NoIPv6 {
		return nil, errors.New("resolver: ipv4 and ipv6 cannot both be off")
	}
	servers, err := parseServers(ctx, cfg.Servers)
	if err != nil {
		return nil, err
	}
	r := &Resolver{
		servers: servers,
		valid:   cfg.Valid,
		timeout: cmp.Or(max(cfg.Timeout, 0), DefaultTimeout),
		ipv4:    !cfg.NoIPv4,
		ipv6:    !cfg.NoIPv6,
		metrics: cfg.Metrics,
		now:     time.Now,
	}
	if size := cmp.Or(cfg.CacheSize, DefaultCacheSize); size > 0 {
		r.cache = newCache(size)
	}
	r.base, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// LookupHost returns the confirmed name of ip, lower-case and without the
// trailing dot. The error wraps [ErrNotFound] or [ErrTemporary]. An
// IPv4-mapped IPv6 address is looked up as the IPv4 address; a zone is
// ignored.
func (r *Resolver) LookupHost(ctx context.Context, ip netip.Addr) (string, error) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return "", fmt.Errorf("%w: invalid address", ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ptr, err := r.lookup(ctx, reverseName(ip), dns.TypePTR)
	if err != nil {
		return "", err
	}
	return r.confirm(ctx, ip, ptr.names)
}

// confirm returns the first of names whose forward lookup contains ip.
func (r *Resolver) confirm(ctx context.Context, ip netip.Addr, names []string) (string, error) {
	qtype, on := dns.TypeA, r.ipv4
	if ip.Is6() {
		qtype, on = dns.TypeAAAA, r.ipv6
	}
	if !on {
		return "", fmt.Errorf("%w: %s lookups are off", ErrNotFound, dns.TypeToString[qtype])
	}
	var temporary error
	for _, name := range names[:min(len(names), maxNames)] {
		host, ok := hostName(name)
		if !ok {
			continue
		}
		fwd, err := r.lookup(ctx, host+".", qtype)
		if err != nil {
			if errors.Is(err, ErrTemporary) && temporary == nil {
				temporary = err
			}
			continue
		}
		if fwd.has(ip) {
			return host, nil
		}
	}
	if temporary != nil {
		return "", temporary
	}
	return "", fmt.Errorf("%w: no name of %s maps back to it", ErrNotFound, ip)
}

// ClientHost returns what nginx passes on as the client's host name: the
// confirmed name, [Unavailable] or [TempUnavailable].
func (r *Resolver) ClientHost(ctx context.Context, ip netip.Addr) string {
	host, err := r.LookupHost(ctx, ip)
	switch {
	case err == nil:
		return host
	case errors.Is(err, ErrNotFound):
		return Unavailable
	default:
		return TempUnavailable
	}
}

// Close stops the queries in flight and waits for them to end. After
// Close, a lookup that needs a name server fails with [ErrTemporary].
func (r *Resolver) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.running.Wait()
	return nil
}
