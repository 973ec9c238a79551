package testutil

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// StartDNS runs a name server on 127.0.0.1 (UDP) that answers from
// records, written in zone file syntax ("2.0.0.127.in-addr.arpa. 60 IN
// PTR client.test."), with NXDOMAIN for any other name. It returns the
// server's address and stops when the test ends.
func StartDNS(t testing.TB, records ...string) string {
	t.Helper()
	zone := map[string][]dns.RR{}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		key := zoneKey(rr.Header().Name, rr.Header().Rrtype)
		zone[key] = append(zone[key], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			if len(q.Question) == 1 {
				m.Answer = zone[zoneKey(q.Question[0].Name, q.Question[0].Qtype)]
			}
			if len(m.Answer) == 0 {
				m.Rcode = dns.RcodeNameError
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func zoneKey(name string, qtype uint16) string {
	return strings.ToLower(name) + " " + dns.TypeToString[qtype]
}
