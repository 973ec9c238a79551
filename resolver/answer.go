package resolver

import (
	"encoding/binary"
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
	maxChain       = 8       // CNAMEs followed for one question, across answers
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

// The parts of a DNS header that tell a response to our query.
const (
	headerLen      = 12
	flagResponse   = 1 << 15
	flagTruncated  = 1 << 9
	opcodeShift    = 11
	opcodeMask     = 0xf
	rcodeMask      = 0xf
	questionFields = 4 // type and class
)

// answer is what a name server said about one question.
type answer struct {
	rcode     int
	truncated bool
	broken    error        // why a response to the question cannot be used
	aliases   []string     // the CNAME chain from the question's name, without it
	names     []string     // PTR targets, as sent
	addrs     []netip.Addr // A or AAAA addresses
	ttl       uint32       // seconds it may be cached
}

// parseAnswer reads a response to the query id for q. It returns an error
// only for a packet that is not such a response, as its header and
// question tell: one too short to hold them, not a response, under another
// ID or with another question. A response that does not unpack past its
// question, or whose answer section does not answer it, is returned as
// broken: nginx treats it as no answer, a temporary failure.
func parseAnswer(raw []byte, id uint16, q dns.Question) (*answer, error) {
	flags, err := responseTo(raw, id, q)
	if err != nil {
		return nil, err
	}
	a := &answer{rcode: int(flags & rcodeMask), truncated: flags&flagTruncated != 0}
	if a.truncated {
		return a, nil
	}
	var m dns.Msg
	if err := m.Unpack(raw); err != nil {
		a.broken = fmt.Errorf("%w: %w", errMalformed, err)
		return a, nil
	}
	switch a.rcode = m.Rcode; a.rcode {
	case dns.RcodeSuccess:
		a.broken = a.collect(&m, q)
	case dns.RcodeNameError:
		a.ttl = negativeTTL(&m)
	}
	return a, nil
}

// responseTo checks, from its header and question alone, that raw is a
// response to the query id for q, and returns the header's flags.
func responseTo(raw []byte, id uint16, q dns.Question) (uint16, error) {
	if len(raw) < headerLen {
		return 0, errMalformed
	}
	flags := binary.BigEndian.Uint16(raw[2:])
	if binary.BigEndian.Uint16(raw) != id || flags&flagResponse == 0 ||
		flags>>opcodeShift&opcodeMask != dns.OpcodeQuery || binary.BigEndian.Uint16(raw[4:]) != 1 {
		return 0, errMismatch
	}
	name, off, err := dns.UnpackDomainName(raw, headerLen)
	if err != nil {
		return 0, fmt.Errorf("%w: question: %w", errMalformed, err)
	}
	if len(raw) < off+questionFields {
		return 0, fmt.Errorf("%w: question cut short", errMalformed)
	}
	qtype, qclass := binary.BigEndian.Uint16(raw[off:]), binary.BigEndian.Uint16(raw[off+2:])
	if qtype != q.Qtype || qclass != q.Qclass || !strings.EqualFold(name, q.Name) {
		return 0, errMismatch
	}
	return flags, nil
}

// collect gathers the records of q's type at the end of the CNAME chain
// from q's name, keeping the chain in aliases, and sets the TTL: the lowest
// of the records and CNAMEs used, or the SOA's when there are none. A chain
// that ends at a name without records is for the caller to follow with a
// question for that name. collect returns why the answer section cannot be
// used: a record of q's type without data, a chain that is too long or
// loops, or records none of which is of q's type or on the chain.
func (a *answer) collect(m *dns.Msg, q dns.Question) error {
	name, ttl := q.Name, uint32(math.MaxUint32)
	names := chain{name}
	for {
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || h.Rrtype != q.Qtype || !strings.EqualFold(h.Name, name) {
				continue
			}
			if !a.add(rr) {
				return fmt.Errorf("%s record of %s without data", dns.TypeToString[q.Qtype], name)
			}
			ttl = min(ttl, h.Ttl)
		}
		cname := findCNAME(m.Answer, name)
		if a.found() || cname == nil {
			break
		}
		var err error
		if names, err = names.extend(cname.Target); err != nil {
			return err
		}
		name, ttl = cname.Target, min(ttl, cname.Hdr.Ttl)
	}
	a.aliases = names[1:]
	switch {
	case a.found() || len(a.aliases) > 0:
		a.ttl = min(ttl, maxTTL)
	case len(m.Answer) > 0:
		return fmt.Errorf("no %s record of %s in the answer", dns.TypeToString[q.Qtype], q.Name)
	default:
		a.ttl = negativeTTL(m)
	}
	return nil
}

// A chain is the names a lookup has gone through by CNAMEs, from the name
// it asked for.
type chain []string

// extend adds target to c, unless that makes more than maxChain links or
// comes back to a name on c.
func (c chain) extend(target string) (chain, error) {
	if len(c) > maxChain {
		return c, fmt.Errorf("more than %d CNAMEs from %s", maxChain, c[0])
	}
	if slices.ContainsFunc(c, func(name string) bool { return strings.EqualFold(name, target) }) {
		return c, fmt.Errorf("CNAME loop from %s at %s", c[0], target)
	}
	return append(c, target), nil
}

// add keeps the data of rr, a record of the type asked, and tells whether
// it had any: a record sent without data unpacks empty.
func (a *answer) add(rr dns.RR) bool {
	var ip netip.Addr
	switch rr := rr.(type) {
	case *dns.PTR:
		if rr.Ptr == "" {
			return false
		}
		a.names = append(a.names, rr.Ptr)
		return true
	case *dns.A:
		ip, _ = netip.AddrFromSlice(rr.A.To4())
	case *dns.AAAA:
		ip, _ = netip.AddrFromSlice(rr.AAAA.To16())
	}
	if !ip.IsValid() {
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

// failure says why the server gave no answer to use (SERVFAIL, REFUSED and
// the like, a truncated answer over TCP, a broken one), so that another
// should be asked; nil when it gave one.
func (a *answer) failure() error {
	switch {
	case a.truncated:
		return errors.New("truncated answer")
	case a.broken != nil:
		return a.broken
	case a.rcode == dns.RcodeSuccess || a.rcode == dns.RcodeNameError:
		return nil
	}
	return rcodeError(a.rcode)
}

func (a *answer) has(ip netip.Addr) bool { return slices.Contains(a.addrs, ip) }
