package resolver

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"
)

// The questions FuzzAnswer asks: a PTR for one name, another type for the
// other.
const (
	fuzzPTRName  = "1.2.0.192.in-addr.arpa."
	fuzzHostName = "good.example."
)

// FuzzAnswer feeds arbitrary packets to the code that checks and reads a
// name server's response: it must not panic, and what it accepts must stay
// within bounds.
func FuzzAnswer(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed.raw, uint16(42), seed.qtype)
	}
	f.Add([]byte("\x00\x2a\x81\x80\x00\x01"), uint16(42), dns.TypeA)
	f.Fuzz(func(t *testing.T, raw []byte, id, qtype uint16) {
		name := fuzzPTRName
		if qtype != dns.TypePTR {
			name = fuzzHostName
		}
		ans, err := parseAnswer(raw, id, dns.Question{Name: name, Qtype: qtype, Qclass: dns.ClassINET})
		if err != nil {
			return
		}
		limit := uint32(maxNegativeTTL)
		if ans.found() || len(ans.aliases) > 0 {
			limit = maxTTL
		}
		if ans.ttl > limit {
			t.Errorf("TTL %d", ans.ttl)
		}
		if len(ans.aliases) > maxChain {
			t.Errorf("%d CNAMEs followed", len(ans.aliases))
		}
		for _, n := range ans.names {
			if n == "" {
				t.Error("empty PTR target kept")
			}
			hostName(n)
		}
		for _, ip := range ans.addrs {
			if !ip.IsValid() {
				t.Error("invalid address kept")
			}
		}
	})
}

type fuzzSeed struct {
	raw   []byte
	qtype uint16
}

// fuzzSeeds packs responses with ID 42: to a PTR question for fuzzPTRName,
// and to an A question for fuzzHostName.
func fuzzSeeds(f *testing.F) []fuzzSeed {
	build := func(qtype uint16, rcode int, tc bool, answer []dns.RR, ns ...string) fuzzSeed {
		m := new(dns.Msg)
		m.SetQuestion(fuzzPTRName, qtype)
		if qtype != dns.TypePTR {
			m.SetQuestion(fuzzHostName, qtype)
		}
		m.Id, m.Response, m.Rcode, m.Truncated = 42, true, rcode, tc
		m.Answer = answer
		m.Ns = records(f, ns...)
		m.SetEdns0(1232, false)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return fuzzSeed{b, qtype}
	}
	// cut ends a response in its answer section, past the OPT record
	// (11 bytes) that ends it.
	cut := func(s fuzzSeed) fuzzSeed { return fuzzSeed{s.raw[:len(s.raw)-11-3], s.qtype} }
	rrs := func(text ...string) []dns.RR { return records(f, text...) }
	q, h := fuzzPTRName, fuzzHostName
	soa := "example. 60 IN SOA ns.example. admin.example. 1 3600 600 86400 5"
	badTarget := &dns.RFC3597{Hdr: dns.RR_Header{Name: q, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 60}, Rdata: "c0ff"}
	chain9 := []string{q + " 60 IN CNAME c1.example."}
	for i := 1; i < 9; i++ {
		chain9 = append(chain9, fmt.Sprintf("c%d.example. 60 IN CNAME c%d.example.", i, i+1))
	}
	chain9 = append(chain9, "c9.example. 60 IN PTR good.example.")
	good := build(dns.TypePTR, dns.RcodeSuccess, false, rrs(q+" 60 IN PTR good.example."))
	return []fuzzSeed{
		good,
		build(dns.TypePTR, dns.RcodeSuccess, false, rrs(q+" 60 IN PTR a.example.", q+" 30 IN PTR b_c.example.")),
		build(dns.TypePTR, dns.RcodeSuccess, false, rrs(q+" 60 IN CNAME x.example.", "x.example. 60 IN PTR good.example.")),
		build(dns.TypePTR, dns.RcodeSuccess, false, rrs(q+" 60 IN CNAME x.example.", "x.example. 60 IN CNAME "+q)),
		build(dns.TypePTR, dns.RcodeSuccess, false, rrs(q+" 60 IN CNAME x.example.")),
		build(dns.TypePTR, dns.RcodeSuccess, false, rrs(chain9...)),
		build(dns.TypePTR, dns.RcodeSuccess, false, rrs(q+` 60 IN PTR \# 0`)),
		build(dns.TypePTR, dns.RcodeSuccess, false, []dns.RR{badTarget}),
		build(dns.TypePTR, dns.RcodeSuccess, false, rrs(q+" 60 IN A 192.0.2.1")),
		build(dns.TypePTR, dns.RcodeSuccess, false, rrs("2.2.0.192.in-addr.arpa. 60 IN PTR good.example.")),
		build(dns.TypePTR, dns.RcodeNameError, false, nil, soa),
		build(dns.TypePTR, dns.RcodeSuccess, false, nil, soa),
		build(dns.TypePTR, dns.RcodeServerFailure, false, nil),
		build(dns.TypePTR, dns.RcodeSuccess, true, nil),
		cut(good),
		cut(build(dns.TypePTR, dns.RcodeSuccess, true, rrs(q+" 60 IN PTR good.example."))),
		build(dns.TypeA, dns.RcodeSuccess, false, rrs(h+" 60 IN A 192.0.2.1")),
		build(dns.TypeA, dns.RcodeSuccess, false, rrs(h+" 60 IN CNAME x.example.", "x.example. 60 IN A 192.0.2.1")),
		build(dns.TypeA, dns.RcodeSuccess, false, rrs(h+` 60 IN A \# 0`)),
		build(dns.TypeA, dns.RcodeSuccess, false, rrs(h+" 60 IN AAAA 2001:db8::1")),
	}
}

// records parses resource records in zone file syntax.
func records(tb testing.TB, rrs ...string) []dns.RR {
	var out []dns.RR
	for _, s := range rrs {
		out = append(out, mustRR(tb, s))
	}
	return out
}

func mustRR(tb testing.TB, s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		tb.Fatal(err)
	}
	return rr
}
