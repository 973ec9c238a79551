package resolver

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Limits on what an answer can make us do or keep.
const (
	maxChain       = 8       // CNAMEs followed inside one answer
	maxTTL         = 86400   // seconds an answer is kept at most
	maxNegativeTTL = 600     // seconds a "no such name" is kept at most
	defNegativeTTL = 30      // seconds a "no such name" without SOA is kept
	udpBufferSize  = 1232    // advertised in EDNS0, as DNS Flag Day 2020 advises
	readBufferSize = 1 << 16 // what a UDP read accepts
)

// Packets that do not answer our query: on UDP they are dropped and the
// wait goes on.
var (
	errMalformed = errors.New("malformed DNS message")
	errMismatch  = errors.New("DNS message does not answer the query")
)

// answer is what a name server said about one question.
type answer struct {
	rcode     int
	truncated bool
	names     []string     // PTR targets, as sent
	addrs     []netip.Addr // A or AAAA addresses
	ttl       uint32       // seconds it may be cached
}

// parseAnswer reads a response to the query id for q. It returns an error
// only for a packet that is not such a response: one that does not unpack,
// is not a response, has another ID, or another question.
func parseAnswer(raw []byte, id uint16, q dns.Question) (*answer, error) {
	var m dns.Msg
	if err := m.Unpack(raw); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if !answers(&m, id, q) {
		return nil, errMismatch
	}
	a := &answer{rcode: m.Rcode, truncated: m.Truncated}
	if a.truncated || a.rcode != dns.RcodeSuccess && a.rcode != dns.RcodeNameError {
		return a, nil
	}
	if a.rcode == dns.RcodeSuccess {
		a.collect(&m, q)
	}
	if !a.found() {
		a.ttl = negativeTTL(&m)
	}
	return a, nil
}

// answers tells whether m is the response to the query id for q.
func answers(m *dns.Msg, id uint16, q dns.Question) bool {
	if !m.Response || m.Id != id || m.Opcode != dns.OpcodeQuery || len(m.Question) != 1 {
		return false
	}
	got := m.Question[0]
	return got.Qtype == q.Qtype && got.Qclass == q.Qclass && strings.EqualFold(got.Name, q.Name)
}

// collect gathers the records of q's type, following CNAMEs from q's name,
// and sets the TTL to the lowest of the records used.
func (a *answer) collect(m *dns.Msg, q dns.Question) {
	name, ttl := q.Name, uint32(math.MaxUint32)
	for range maxChain {
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Class == dns.ClassINET && strings.EqualFold(h.Name, name) && a.add(rr, q.Qtype) {
				ttl = min(ttl, h.Ttl)
			}
		}
		if a.found() {
			a.ttl = min(ttl, maxTTL)
			return
		}
		cname := findCNAME(m.Answer, name)
		if cname == nil {
			return
		}
		name, ttl = cname.Target, min(ttl, cname.Hdr.Ttl)
	}
}

// add keeps rr if it is of type qtype, and tells whether it did.
func (a *answer) add(rr dns.RR, qtype uint16) bool {
	var ip netip.Addr
	switch rr := rr.(type) {
	case *dns.PTR:
		if qtype == dns.TypePTR {
			a.names = append(a.names, rr.Ptr)
			return true
		}
		return false
	case *dns.A:
		ip, _ = netip.AddrFromSlice(rr.A.To4())
	case *dns.AAAA:
		ip, _ = netip.AddrFromSlice(rr.AAAA.To16())
	}
	if !ip.IsValid() || rr.Header().Rrtype != qtype {
		return false
	}
	a.addrs = append(a.addrs, ip)
	return true
}

func findCNAME(rrs []dns.RR, name string) *dns.CNAME {
	for _, rr := range rrs {
		if c, ok := rr.(*dns.CNAME); ok && c.Hdr.Class == dns.ClassINET && strings.EqualFold(c.Hdr.Name, name) {
			return c
		}
	}
	return nil
}

// negativeTTL is how long a "no such name" or "no such record" may be
// kept: the SOA's minimum (RFC 2308), within bounds.
func negativeTTL(m *dns.Msg) uint32 {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl, maxNegativeTTL)
		}
	}
	return defNegativeTTL
}

func (a *answer) found() bool { return len(a.names) > 0 || len(a.addrs) > 0 }

// serverFailed tells whether the server could not answer (SERVFAIL,
// REFUSED and the like, or a truncated answer over TCP), so that another
// one should be asked.
func (a *answer) serverFailed() bool {
	return a.truncated || a.rcode != dns.RcodeSuccess && a.rcode != dns.RcodeNameError
}

func (a *answer) has(ip netip.Addr) bool { return slices.Contains(a.addrs, ip) }
