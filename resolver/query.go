package resolver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// passes is how many times each name server may be asked one question.
const passes = 3

// lookup returns the records of type qtype of name, following CNAMEs
// across answers when an answer's chain ends without them: at most
// maxChain links in all, never back to a name on the chain. A name or
// record that does not exist gives an error wrapping ErrNotFound; no
// answer, or a chain too long or looping, one wrapping ErrTemporary. It
// is one query in Angie's counts.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (*answer, error) {
	ans, err := r.follow(ctx, name, qtype)
	if r.metrics != nil {
		r.metrics.Lookup(queryKind(qtype), responseOf(err))
	}
	return ans, err
}

// follow is lookup, uncounted.
func (r *Resolver) follow(ctx context.Context, name string, qtype uint16) (*answer, error) {
	names := chain{name}
	for {
		ans, err := r.query(ctx, names[len(names)-1], qtype)
		if err != nil {
			return nil, err
		}
		for _, alias := range ans.aliases {
			if names, err = names.extend(alias); err != nil {
				return nil, fmt.Errorf("%w: %s %s: %w", ErrTemporary, dns.TypeToString[qtype], name, err)
			}
		}
		switch {
		case ans.found():
			return ans, nil
		case len(ans.aliases) == 0:
			why := "no records"
			if ans.rcode == dns.RcodeNameError {
				why = "NXDOMAIN"
			}
			return nil, fmt.Errorf("%w: %s %s: %s", ErrNotFound, dns.TypeToString[qtype], names[len(names)-1], why)
		}
	}
}

// query answers a question from the cache or the name servers: an error,
// wrapping ErrTemporary, only when there is no answer.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	k := cacheKey{strings.ToLower(name), qtype}
	if ans, ok := r.cached(k); ok {
		return ans, nil
	}
	return r.shared(ctx, k)
}

func (r *Resolver) cached(k cacheKey) (*answer, bool) {
	if r.cache == nil {
		return nil, false
	}
	return r.cache.get(k, r.now())
}

// shared asks the name servers once for all the lookups of the same
// question at the same time. The query goes on for the others if ctx ends.
func (r *Resolver) shared(ctx context.Context, k cacheKey) (*answer, error) {
	ch := r.flights.DoChan(fmt.Sprint(k.qtype, " ", k.name), func() (any, error) {
		return r.fetch(k)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*answer), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s %s: %w", ErrTemporary, dns.TypeToString[k.qtype], k.name, context.Cause(ctx))
	}
}

// fetch asks the name servers and caches what they say.
func (r *Resolver) fetch(k cacheKey) (*answer, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrTemporary, net.ErrClosed)
	}
	r.running.Add(1)
	r.mu.Unlock()
	defer r.running.Done()

	ctx, cancel := context.WithTimeout(r.base, r.timeout)
	defer cancel()
	start := time.Now()
	ans, err := r.exchange(ctx, dns.Question{Name: k.name, Qtype: k.qtype, Qclass: dns.ClassINET})
	if r.metrics != nil {
		r.metrics.Exchange(time.Since(start))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrTemporary, dns.TypeToString[k.qtype], k.name, err)
	}
	r.store(k, ans)
	return ans, nil
}

// store caches ans for its TTL, or for Valid when that is set.
func (r *Resolver) store(k cacheKey, ans *answer) {
	ttl := time.Duration(ans.ttl) * time.Second
	if r.valid > 0 {
		ttl = r.valid
	}
	if r.cache != nil && ttl > 0 {
		r.cache.put(k, ans, r.now().Add(ttl))
	}
}

// exchange asks the name servers in turn, starting with the next in the
// round robin, until one answers or ctx ends. Each may be asked a few
// times, each time with a share of the timeout.
func (r *Resolver) exchange(ctx context.Context, q dns.Question) (*answer, error) {
	n := len(r.servers)
	start := int(r.next.Add(1) - 1)
	perTry := r.timeout / time.Duration(n*passes)
	var last error
	for i := 0; i < n*passes && ctx.Err() == nil; i++ {
		server := r.servers[(start+i)%n]
		ans, err := try(ctx, server, q, perTry)
		if err == nil {
			err = ans.failure()
		}
		if err == nil {
			return ans, nil
		}
		last = fmt.Errorf("%s: %w", server, err)
	}
	if last == nil {
		return nil, context.Cause(ctx)
	}
	return nil, last
}

// try asks one server, over UDP and then over TCP if the answer was
// truncated.
func try(ctx context.Context, server netip.AddrPort, q dns.Question, timeout time.Duration) (*answer, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ans, err := exchangeUDP(ctx, server, q)
	if err != nil || !ans.truncated {
		return ans, err
	}
	return exchangeTCP(ctx, server, q)
}
