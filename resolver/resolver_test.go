package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

func newTestResolver(t testing.TB, cfg Config) (*Resolver, *testutil.Clock) {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	r, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.NewClock(time.Unix(1e9, 0))
	r.now = c.Now
	t.Cleanup(func() { r.Close() })
	return r, c
}

var addr = netip.MustParseAddr

func TestClientHost(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}, Timeout: 300 * time.Millisecond})
	tests := []struct {
		name string
		ip   netip.Addr
		want string
		err  error
	}{
		{"PTR and A", addr("192.0.2.1"), "good.example", nil},
		{"IPv4-mapped", addr("::ffff:192.0.2.1"), "good.example", nil},
		{"PTR and AAAA", addr("2001:db8::1"), "good6.example", nil},
		{"zone ignored", addr("2001:db8::1%eth0"), "good6.example", nil},
		{"NXDOMAIN", addr("192.0.2.2"), Unavailable, ErrNotFound},
		{"SERVFAIL", addr("192.0.2.3"), TempUnavailable, ErrTemporary},
		{"forward mismatch", addr("192.0.2.4"), Unavailable, ErrNotFound},
		{"slow", addr("192.0.2.5"), TempUnavailable, ErrTemporary},
		{"truncated, then TCP", addr("192.0.2.6"), "tcp.example", nil},
		{"spoofed packets first", addr("192.0.2.7"), "spoofed.example", nil},
		{"second PTR confirms", addr("192.0.2.8"), "second.example", nil},
		{"invalid host names", addr("192.0.2.9"), Unavailable, ErrNotFound},
		{"CNAME to PTR, mixed case", addr("192.0.2.10"), "mixed.case.example", nil},
		{"NODATA for A", addr("192.0.2.12"), Unavailable, ErrNotFound},
		{"NODATA for PTR", addr("192.0.2.13"), Unavailable, ErrNotFound},
		{"invalid address", netip.Addr{}, Unavailable, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.ClientHost(t.Context(), tt.ip); got != tt.want {
				t.Errorf("ClientHost = %q, want %q", got, tt.want)
			}
			host, err := r.LookupHost(t.Context(), tt.ip)
			if !errors.Is(err, tt.err) || tt.err == nil && host != tt.want {
				t.Errorf("LookupHost = %q, %v; want %v", host, err, tt.err)
			}
		})
	}
	if s.total(true) == 0 {
		t.Error("the truncated answer was not asked again over TCP")
	}
}

// CNAMEs are followed, in one answer and across answers, for the PTR and
// for the forward confirmation: 8 links in all at most, never back to a
// name already on the chain.
func TestCNAMEChains(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	tests := []struct {
		name    string
		ip      netip.Addr
		want    string
		err     error
		queries int // sent by one lookup without a cache
	}{
		{"CNAME and PTR in one answer", addr("192.0.2.10"), "mixed.case.example", nil, 2},
		{"CNAME, then a query for its target", addr("192.0.2.20"), "delegated.example", nil, 3},
		{"loop in one answer", addr("192.0.2.21"), TempUnavailable, ErrTemporary, passes},
		{"loop across answers", addr("192.0.2.22"), TempUnavailable, ErrTemporary, 2},
		{"8 links in one answer", addr("192.0.2.23"), "chain23.example", nil, 2},
		{"9 links in one answer", addr("192.0.2.24"), TempUnavailable, ErrTemporary, passes},
		{"8 links across answers", addr("192.0.2.25"), "chain25.example", nil, 3},
		{"9 links across answers", addr("192.0.2.26"), TempUnavailable, ErrTemporary, 2},
		{"PTR name is a CNAME", addr("192.0.2.27"), "alias.example", nil, 3},
		{"PTR name is a CNAME to another address", addr("192.0.2.28"), Unavailable, ErrNotFound, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestResolver(t, Config{Servers: []string{s.addr}, CacheSize: -1})
			before := s.total(false)
			host, err := r.LookupHost(t.Context(), tt.ip)
			if !errors.Is(err, tt.err) || tt.err == nil && host != tt.want {
				t.Errorf("LookupHost = %q, %v; want %q, %v", host, err, tt.want, tt.err)
			}
			if got := r.ClientHost(t.Context(), tt.ip); got != tt.want {
				t.Errorf("ClientHost = %q, want %q", got, tt.want)
			}
			if n := (s.total(false) - before) / 2; n != tt.queries {
				t.Errorf("%d queries per lookup, want %d", n, tt.queries)
			}
		})
	}
}

// A response to our question that cannot be used is a temporary failure,
// as nginx has it, and is not kept: only NXDOMAIN and an empty NOERROR
// say that there is no name. A packet that is not a response to the
// question is dropped on UDP, the wait going on until the deadline.
func TestBrokenAnswers(t *testing.T) {
	checkGoroutines(t)
	const ptr, fwd = "1.2.0.192.in-addr.arpa.", "good.example."
	record := func(owner string, rrtype uint16, rdata string) dns.RR {
		return &dns.RFC3597{Hdr: dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: 60}, Rdata: rdata}
	}
	answerWith := func(rrs ...dns.RR) func(*dns.Msg) []byte {
		return edited(func(m *dns.Msg) { m.Answer = rrs })
	}
	cut := func(resp *dns.Msg) []byte {
		b, err := resp.Pack()
		if err != nil {
			panic(err)
		}
		return b[:len(b)-3]
	}
	tests := []struct {
		name     string
		question string
		script   script
		want     string
		kept     bool // the answer is cached
		whole    bool // the lookup waits until resolver_timeout
	}{
		{"NXDOMAIN", ptr, always(edited(func(m *dns.Msg) { m.Rcode, m.Answer = dns.RcodeNameError, nil })), Unavailable, true, false},
		{"empty NOERROR", ptr, always(answerWith()), Unavailable, true, false},
		{"PTR with empty RDATA", ptr, always(answerWith(record(ptr, dns.TypePTR, ""))), TempUnavailable, false, false},
		{"PTR target points out of the message", ptr, always(answerWith(record(ptr, dns.TypePTR, "c0ff"))), TempUnavailable, false, false},
		{"PTR target runs past its RDATA", ptr, always(answerWith(record(ptr, dns.TypePTR, "03616263"))), TempUnavailable, false, false},
		{"PTR target with a reserved label type", ptr, always(answerWith(record(ptr, dns.TypePTR, "4161626300"))), TempUnavailable, false, false},
		{"only an A record for a PTR question", ptr, always(answerWith(mustRR(t, ptr+" 60 IN A 192.0.2.1"))), TempUnavailable, false, false},
		{"PTR of another name", ptr, always(answerWith(mustRR(t, "2.2.0.192.in-addr.arpa. 60 IN PTR good.example."))), TempUnavailable, false, false},
		{"A with empty RDATA", fwd, always(answerWith(record(fwd, dns.TypeA, ""))), TempUnavailable, false, false},
		{"only an AAAA record for an A question", fwd, always(answerWith(mustRR(t, fwd+" 60 IN AAAA 2001:db8::1"))), TempUnavailable, false, false},
		{"cut short", ptr, always(cut), TempUnavailable, false, false},
		{"truncated, then cut short over TCP", ptr, truncatedThen(cut), TempUnavailable, false, false},
		{"truncated over UDP and TCP", ptr, truncatedThen(edited(func(m *dns.Msg) { m.Truncated = true })), TempUnavailable, false, false},
		{"wrong ID only", ptr, always(edited(func(m *dns.Msg) { m.Id++ })), TempUnavailable, false, true},
		{"wrong question only", ptr, always(edited(func(m *dns.Msg) { m.Question[0].Name = "2.2.0.192.in-addr.arpa." })), TempUnavailable, false, true},
	}
	const timeout = 600 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, answering(tt.question, tt.script))
			r, _ := newTestResolver(t, Config{Servers: []string{s.addr}, Timeout: timeout})
			start := time.Now()
			if got := r.ClientHost(t.Context(), addr("192.0.2.1")); got != tt.want {
				t.Errorf("ClientHost = %q, want %q", got, tt.want)
			}
			switch took := time.Since(start); {
			case tt.whole && took < timeout*9/10:
				t.Errorf("took %v, want the whole %v", took, timeout)
			case !tt.whole && took > timeout/2:
				t.Errorf("took %v: the answer was not taken at once", took)
			}
			qtype := dns.TypePTR
			if tt.question == fwd {
				qtype = dns.TypeA
			}
			if _, kept := r.cached(cacheKey{tt.question, qtype}); kept != tt.kept {
				t.Errorf("answer kept in the cache: %v, want %v", kept, tt.kept)
			}
		})
	}
}

func TestIPv6NameServer(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t, onHost("::1"))
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}})
	for _, ip := range []netip.Addr{addr("192.0.2.1"), addr("2001:db8::1"), addr("192.0.2.6")} {
		if _, err := r.LookupHost(t.Context(), ip); err != nil {
			t.Errorf("%s: %v", ip, err)
		}
	}
}

func TestIPFamilies(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	v4, v6 := addr("192.0.2.1"), addr("2001:db8::1")
	tests := []struct {
		name         string
		cfg          Config
		want4, want6 string
		forward      int // A and AAAA queries
	}{
		{"both", Config{}, "good.example", "good6.example", 2},
		{"ipv4=off", Config{NoIPv4: true}, Unavailable, "good6.example", 1},
		{"ipv6=off", Config{NoIPv6: true}, "good.example", Unavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Servers = []string{s.addr}
			tt.cfg.CacheSize = -1
			r, _ := newTestResolver(t, tt.cfg)
			before := s.count("good.example.", dns.TypeA) + s.count("good6.example.", dns.TypeAAAA)
			if got := r.ClientHost(t.Context(), v4); got != tt.want4 {
				t.Errorf("IPv4 client: %q, want %q", got, tt.want4)
			}
			if got := r.ClientHost(t.Context(), v6); got != tt.want6 {
				t.Errorf("IPv6 client: %q, want %q", got, tt.want6)
			}
			after := s.count("good.example.", dns.TypeA) + s.count("good6.example.", dns.TypeAAAA)
			if after-before != tt.forward {
				t.Errorf("%d forward queries, want %d", after-before, tt.forward)
			}
		})
	}
}

func TestNoBothFamiliesOff(t *testing.T) {
	_, err := New(t.Context(), Config{Servers: []string{"127.0.0.1"}, NoIPv4: true, NoIPv6: true})
	if err == nil {
		t.Fatal("New accepted ipv4=off ipv6=off")
	}
}

func TestFailover(t *testing.T) {
	checkGoroutines(t)
	good := newTestServer(t)
	refusing := newTestServer(t, refusing)
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	tests := []struct {
		name  string
		first string
	}{
		{"silent", deadServer(t)},
		{"REFUSED", refusing.addr},
		{"port closed", closed.LocalAddr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestResolver(t, Config{Servers: []string{tt.first, good.addr}, Timeout: time.Second})
			before := good.count("1.2.0.192.in-addr.arpa.", dns.TypePTR)
			start := time.Now()
			host, err := r.LookupHost(t.Context(), addr("192.0.2.1"))
			if err != nil || host != "good.example" {
				t.Fatalf("LookupHost = %q, %v", host, err)
			}
			if good.count("1.2.0.192.in-addr.arpa.", dns.TypePTR) != before+1 {
				t.Error("the good server was not asked the PTR")
			}
			t.Logf("took %v", time.Since(start))
		})
	}
}

func TestRoundRobin(t *testing.T) {
	checkGoroutines(t)
	a, b := newTestServer(t), newTestServer(t)
	r, _ := newTestResolver(t, Config{Servers: []string{a.addr, b.addr}, CacheSize: -1})
	const lookups = 10
	for range lookups {
		if host := r.ClientHost(t.Context(), addr("192.0.2.1")); host != "good.example" {
			t.Fatalf("ClientHost = %q", host)
		}
	}
	if a.total(false) != lookups || b.total(false) != lookups {
		t.Errorf("queries: %d and %d, want %d each", a.total(false), b.total(false), lookups)
	}
}

func TestCache(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	// Each step advances the clock, looks ip up and checks whether
	// queries were sent.
	type step struct {
		advance time.Duration
		queried bool
	}
	tests := []struct {
		name  string
		valid time.Duration
		ip    netip.Addr
		want  string
		steps []step
	}{
		{"hit", 0, addr("192.0.2.1"), "good.example", []step{{0, true}, {0, false}, {59 * time.Second, false}}},
		{"TTL", 0, addr("192.0.2.11"), "short.example", []step{{0, true}, {9 * time.Second, false}, {time.Second, true}, {time.Second, false}}},
		{"valid longer than TTL", time.Hour, addr("192.0.2.11"), "short.example", []step{{0, true}, {59 * time.Minute, false}, {time.Minute, true}}},
		{"valid shorter than TTL", time.Second, addr("192.0.2.1"), "good.example", []step{{0, true}, {999 * time.Millisecond, false}, {time.Millisecond, true}}},
		{"NXDOMAIN for the SOA minimum", 0, addr("192.0.2.2"), Unavailable, []step{{0, true}, {4 * time.Second, false}, {time.Second, true}}},
		{"mismatch", 0, addr("192.0.2.4"), Unavailable, []step{{0, true}, {0, false}}},
		{"SERVFAIL not kept", 0, addr("192.0.2.3"), TempUnavailable, []step{{0, true}, {0, true}}},
		{"each answer of a chain for its TTL", 0, addr("192.0.2.20"), "delegated.example", []step{{0, true}, {29 * time.Second, false}, {time.Second, true}}},
		{"a chain for valid", time.Hour, addr("192.0.2.20"), "delegated.example", []step{{0, true}, {59 * time.Minute, false}, {time.Minute, true}}},
		{"loop in one answer not kept", 0, addr("192.0.2.21"), TempUnavailable, []step{{0, true}, {0, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, clock := newTestResolver(t, Config{Servers: []string{s.addr}, Valid: tt.valid})
			for i, step := range tt.steps {
				clock.Advance(step.advance)
				before := s.total(false)
				if got := r.ClientHost(t.Context(), tt.ip); got != tt.want {
					t.Errorf("step %d: ClientHost = %q, want %q", i, got, tt.want)
				}
				if queried := s.total(false) > before; queried != step.queried {
					t.Errorf("step %d: queried %v, want %v", i, queried, step.queried)
				}
			}
		})
	}
}

func TestCacheBounded(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}, CacheSize: 3})
	for _, ip := range []string{"192.0.2.1", "192.0.2.4", "192.0.2.8", "192.0.2.2"} {
		r.ClientHost(t.Context(), addr(ip))
		if n := r.cache.len(); n > 3 {
			t.Fatalf("after %s, %d entries in a cache of 3", ip, n)
		}
	}
	before := s.total(false)
	if host := r.ClientHost(t.Context(), addr("192.0.2.1")); host != "good.example" {
		t.Fatalf("ClientHost = %q", host)
	}
	if s.total(false) == before {
		t.Error("the oldest answers were not evicted")
	}
}

func TestCacheLRU(t *testing.T) {
	c := newCache(2)
	now := time.Unix(1e9, 0)
	a, b, d := cacheKey{"a.", 1}, cacheKey{"b.", 1}, cacheKey{"d.", 1}
	c.put(a, &answer{}, now.Add(time.Minute))
	c.put(b, &answer{}, now.Add(time.Minute))
	if _, ok := c.get(a, now); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	c.put(d, &answer{}, now.Add(time.Minute))
	if _, ok := c.get(b, now); ok {
		t.Error("b, the least recently used, was kept")
	}
	if _, ok := c.get(a, now); !ok {
		t.Error("a was evicted")
	}
	if _, ok := c.get(d, now.Add(time.Minute)); ok {
		t.Error("d was returned after it expired")
	}
	if c.len() != 1 {
		t.Errorf("len = %d after one expiry, want 1", c.len())
	}
}

func TestSingleflight(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t, slowBy(200*time.Millisecond))
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}})
	const n = 20
	hosts := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { hosts <- r.ClientHost(t.Context(), addr("192.0.2.5")) })
	}
	wg.Wait()
	close(hosts)
	for host := range hosts {
		if host != "slow.example" {
			t.Errorf("ClientHost = %q", host)
		}
	}
	if got := s.count(slowName, dns.TypePTR); got != 1 {
		t.Errorf("%d PTR queries for %d concurrent lookups, want 1", got, n)
	}
}

// A client that joins a lookup in flight waits no longer than that lookup,
// which resolver_timeout bounds, nor than its own deadline from when it
// asked.
func TestJoinerDeadline(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t, slowBy(5*time.Second))
	const timeout = time.Second
	const slack = 150 * time.Millisecond
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}, Timeout: timeout})
	type result struct {
		host string
		took time.Duration
	}
	lookup := func(ctx context.Context) <-chan result {
		ch := make(chan result, 1)
		go func() {
			start := time.Now()
			host := r.ClientHost(ctx, addr("192.0.2.5"))
			ch <- result{host, time.Since(start)}
		}()
		return ch
	}
	start := time.Now()
	first := lookup(context.Background())
	for i := 0; s.count(slowName, dns.TypePTR) == 0; i++ {
		if i == 1000 {
			t.Fatal("the query never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(timeout / 2)
	joined := time.Since(start)
	late := lookup(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	hurried := lookup(ctx)

	f, l, h := <-first, <-late, <-hurried
	for name, res := range map[string]result{"first": f, "late": l, "hurried": h} {
		if res.host != TempUnavailable {
			t.Errorf("%s: ClientHost = %q, want %q", name, res.host, TempUnavailable)
		}
	}
	if f.took > timeout+slack {
		t.Errorf("first client: %v, resolver_timeout is %v", f.took, timeout)
	}
	if joined+l.took > f.took+slack {
		t.Errorf("late client: returned %v after the first", joined+l.took-f.took)
	}
	if h.took > 100*time.Millisecond+slack {
		t.Errorf("client with a 100ms deadline: %v", h.took)
	}
	if n := s.count(slowName, dns.TypePTR); n > passes {
		t.Errorf("%d PTR queries, want at most %d: the joiners asked again", n, passes)
	}
}

func TestClose(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}, Timeout: 10 * time.Second})
	result := make(chan error, 1)
	go func() {
		_, err := r.LookupHost(context.Background(), addr("192.0.2.5"))
		result <- err
	}()
	for i := 0; s.count(slowName, dns.TypePTR) == 0; i++ {
		if i == 1000 {
			t.Fatal("the query never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	r.Close()
	if err := <-result; !errors.Is(err, ErrTemporary) {
		t.Errorf("lookup in flight: %v, want ErrTemporary", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("Close took %v", time.Since(start))
	}
	if _, err := r.LookupHost(t.Context(), addr("192.0.2.1")); !errors.Is(err, ErrTemporary) {
		t.Errorf("lookup after Close: %v, want ErrTemporary", err)
	}
}

func TestCallerDeadline(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}, Timeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := r.LookupHost(ctx, addr("192.0.2.5"))
	if !errors.Is(err, ErrTemporary) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("LookupHost = %v, want ErrTemporary and DeadlineExceeded", err)
	}
}

func TestParseServers(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for an error
	}{
		{"127.0.0.53", "127.0.0.53:53"},
		{"127.0.0.1:5353", "127.0.0.1:5353"},
		{"[::1]:5353", "[::1]:5353"},
		{"[::1]", "[::1]:53"},
		{"::1", "[::1]:53"},
		{"::ffff:127.0.0.1", "127.0.0.1:53"},
		{"127.0.0.1:0", ""},
		{"127.0.0.1:65536", ""},
		{"127.0.0.1:x", ""},
		{"", ""},
		{"[::1", ""},
		{"no-such-host.invalid", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseServers(t.Context(), []string{tt.in})
			switch {
			case tt.want == "" && err == nil:
				t.Errorf("parsed as %v, want an error", got)
			case tt.want != "" && (err != nil || len(got) != 1 || got[0].String() != tt.want):
				t.Errorf("got %v, %v; want %s", got, err, tt.want)
			}
		})
	}
	if _, err := parseServers(t.Context(), nil); err == nil {
		t.Error("no servers accepted")
	}
}

func TestParseServerName(t *testing.T) {
	got, err := parseServers(t.Context(), []string{"localhost:5353"})
	if err != nil {
		t.Skipf("localhost does not resolve here: %v", err)
	}
	for _, s := range got {
		if !s.Addr().IsLoopback() || s.Port() != 5353 {
			t.Errorf("localhost:5353 gave %s", s)
		}
	}
}

func TestReverseName(t *testing.T) {
	for _, ip := range []string{"192.0.2.1", "10.0.0.255", "2001:db8::1", "::1", "fe80::1:2:3:4"} {
		want, err := dns.ReverseAddr(ip)
		if err != nil {
			t.Fatal(err)
		}
		if got := reverseName(addr(ip)); got != want {
			t.Errorf("%s: %q, want %q", ip, got, want)
		}
	}
}

func TestHostName(t *testing.T) {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		in, want string
	}{
		{"Mail.Example.ORG.", "mail.example.org"},
		{"mail-1.example", "mail-1.example"},
		{"localhost.", "localhost"},
		{"123.example.", "123.example"},
		{long(63) + ".example.", long(63) + ".example"},
		{long(63) + "." + long(63) + "." + long(63) + "." + long(61) + ".", long(63) + "." + long(63) + "." + long(63) + "." + long(61)},
		{long(64) + ".example.", ""},
		{long(63) + "." + long(63) + "." + long(63) + "." + long(62) + ".", ""},
		{"", ""},
		{".", ""},
		{"a..b.", ""},
		{".a.", ""},
		{"a.b..", ""},
		{"bad_name.example.", ""},
		{`bad\032name.example.`, ""},
		{"bad name.example.", ""},
		{"crlf\r\n.example.", ""},
		{"-lead.example.", ""},
		{"trail-.example.", ""},
		{"ünicode.example.", ""},
		{"*.example.", ""},
	}
	for _, tt := range tests {
		got, ok := hostName(tt.in)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("hostName(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	q := dns.Question{Name: "1.2.0.192.in-addr.arpa.", Qtype: dns.TypePTR, Qclass: dns.ClassINET}
	reply := func(edit func(*dns.Msg), rrs ...string) []byte {
		m := new(dns.Msg)
		m.SetQuestion(q.Name, q.Qtype)
		m.Id = 42
		m.Response = true
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		if edit != nil {
			edit(m)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ptr := reply(nil, "1.2.0.192.in-addr.arpa. 300 IN PTR a.example.")
	truncated := reply(func(m *dns.Msg) { m.Truncated = true }, "1.2.0.192.in-addr.arpa. 300 IN PTR a.example.")
	tests := []struct {
		name   string
		raw    []byte
		err    error
		names  int
		ttl    uint32
		broken bool
	}{
		{"PTR", reply(nil, "1.2.0.192.in-addr.arpa. 300 IN PTR a.example.", "1.2.0.192.IN-ADDR.ARPA. 200 IN PTR b.example."), nil, 2, 200, false},
		{"other owners ignored", reply(nil, "1.2.0.192.in-addr.arpa. 300 IN PTR a.example.", "2.2.0.192.in-addr.arpa. 100 IN PTR b.example."), nil, 1, 300, false},
		{"only another owner's PTR", reply(nil, "2.2.0.192.in-addr.arpa. 300 IN PTR a.example."), nil, 0, 0, true},
		{"only another type", reply(nil, "1.2.0.192.in-addr.arpa. 300 IN A 192.0.2.1"), nil, 0, 0, true},
		{"empty NOERROR", reply(nil), nil, 0, defNegativeTTL, false},
		{"NXDOMAIN", reply(func(m *dns.Msg) { m.Rcode = dns.RcodeNameError }), nil, 0, defNegativeTTL, false},
		{"huge TTL capped", reply(nil, "1.2.0.192.in-addr.arpa. 4000000000 IN PTR a.example."), nil, 1, maxTTL, false},
		{"CNAME chain", reply(nil, "1.2.0.192.in-addr.arpa. 300 IN CNAME x.example.", "x.example. 100 IN PTR a.example."), nil, 1, 100, false},
		{"CNAME to a name not in the answer", reply(nil, "1.2.0.192.in-addr.arpa. 300 IN CNAME x.example.", "y.example. 100 IN PTR a.example."), nil, 0, 300, false},
		{"CNAME loop", reply(nil, "1.2.0.192.in-addr.arpa. 300 IN CNAME x.example.", "x.example. 100 IN CNAME 1.2.0.192.in-addr.arpa."), nil, 0, 0, true},
		{"cut short in the answer", ptr[:len(ptr)-3], nil, 0, 0, true},
		{"cut short in the question", ptr[:headerLen+5], errMalformed, 0, 0, false},
		{"truncated, the rest cut short", truncated[:len(truncated)-3], nil, 0, 0, false},
		{"wrong ID", reply(func(m *dns.Msg) { m.Id = 43 }), errMismatch, 0, 0, false},
		{"not a response", reply(func(m *dns.Msg) { m.Response = false }), errMismatch, 0, 0, false},
		{"wrong class", reply(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), errMismatch, 0, 0, false},
		{"wrong opcode", reply(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), errMismatch, 0, 0, false},
		{"no question", reply(func(m *dns.Msg) { m.Question = nil }), errMismatch, 0, 0, false},
		{"two questions", reply(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), errMismatch, 0, 0, false},
		{"garbage", []byte("\x00\x2a\x80"), errMalformed, 0, 0, false},
		{"empty", nil, errMalformed, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ans, err := parseAnswer(tt.raw, 42, q)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if len(ans.names) != tt.names || ans.ttl != tt.ttl || (ans.broken != nil) != tt.broken {
				t.Errorf("got %d names, TTL %d, broken: %v; want %d, %d, broken %v", len(ans.names), ans.ttl, ans.broken, tt.names, tt.ttl, tt.broken)
			}
		})
	}
}
