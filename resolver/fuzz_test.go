package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds arbitrary packets to the code that checks and reads a
// name server's response: it must not panic, and what it accepts must stay
// within bounds.
func FuzzAnswer(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed, uint16(42), dns.TypePTR)
	}
	f.Add([]byte("\x00\x2a\x81\x80\x00\x01"), uint16(42), dns.TypeA)
	f.Fuzz(func(t *testing.T, raw []byte, id, qtype uint16) {
		name := "1.2.0.192.in-addr.arpa."
		if qtype != dns.TypePTR {
			name = "good.example."
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
			hostName(n)
		}
		for _, ip := range ans.addrs {
			if !ip.IsValid() {
				t.Error("invalid address kept")
			}
		}
	})
}

// fuzzSeeds packs responses to a PTR query with ID 42.
func fuzzSeeds(f *testing.F) [][]byte {
	q := "1.2.0.192.in-addr.arpa."
	build := func(rcode int, tc bool, answer, ns []string) []byte {
		m := new(dns.Msg)
		m.SetQuestion(q, dns.TypePTR)
		m.Id, m.Response, m.Rcode, m.Truncated = 42, true, rcode, tc
		for _, s := range answer {
			m.Answer = append(m.Answer, mustRR(f, s))
		}
		for _, s := range ns {
			m.Ns = append(m.Ns, mustRR(f, s))
		}
		m.SetEdns0(1232, false)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	soa := "example. 60 IN SOA ns.example. admin.example. 1 3600 600 86400 5"
	return [][]byte{
		build(dns.RcodeSuccess, false, []string{q + " 60 IN PTR good.example."}, nil),
		build(dns.RcodeSuccess, false, []string{q + " 60 IN PTR a.example.", q + " 30 IN PTR b_c.example."}, nil),
		build(dns.RcodeSuccess, false, []string{q + " 60 IN CNAME x.example.", "x.example. 60 IN PTR good.example."}, nil),
		build(dns.RcodeSuccess, false, []string{q + " 60 IN CNAME x.example.", "x.example. 60 IN CNAME " + q}, nil),
		build(dns.RcodeNameError, false, nil, []string{soa}),
		build(dns.RcodeSuccess, false, nil, []string{soa}),
		build(dns.RcodeServerFailure, false, nil, nil),
		build(dns.RcodeSuccess, true, nil, nil),
	}
}

func mustRR(tb testing.TB, s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		tb.Fatal(err)
	}
	return rr
}
