package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The test zone: the client addresses and what their names resolve to.
// Every record has a TTL of 60s; a missing name gets NXDOMAIN with an SOA
// whose minimum is 5s.
var testZone = []string{
	// 192.0.2.1: a good PTR and A.
	"1.2.0.192.in-addr.arpa. 60 IN PTR good.example.",
	"good.example. 60 IN A 192.0.2.1",
	// 2001:db8::1: a good PTR and AAAA.
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 60 IN PTR good6.example.",
	"good6.example. 60 IN AAAA 2001:db8::1",
	// 192.0.2.2 has no PTR (NXDOMAIN); 192.0.2.3 gets SERVFAIL.
	// 192.0.2.4: the name's address is another.
	"4.2.0.192.in-addr.arpa. 60 IN PTR mismatch.example.",
	"mismatch.example. 60 IN A 192.0.2.99",
	// 192.0.2.5: answered after slowDelay.
	"5.2.0.192.in-addr.arpa. 60 IN PTR slow.example.",
	"slow.example. 60 IN A 192.0.2.5",
	// 192.0.2.6: truncated over UDP, whole over TCP.
	"6.2.0.192.in-addr.arpa. 60 IN PTR tcp.example.",
	"tcp.example. 60 IN A 192.0.2.6",
	// 192.0.2.7: garbage, a wrong ID and a wrong question come first.
	"7.2.0.192.in-addr.arpa. 60 IN PTR spoofed.example.",
	"spoofed.example. 60 IN A 192.0.2.7",
	// 192.0.2.8: two names, the second confirms.
	"8.2.0.192.in-addr.arpa. 60 IN PTR first.example.",
	"8.2.0.192.in-addr.arpa. 60 IN PTR second.example.",
	"first.example. 60 IN A 192.0.2.200",
	"second.example. 60 IN A 192.0.2.8",
	// 192.0.2.9: names that are not host names; their A records would confirm.
	`9.2.0.192.in-addr.arpa. 60 IN PTR bad_name.example.`,
	`9.2.0.192.in-addr.arpa. 60 IN PTR bad\032name.example.`,
	`9.2.0.192.in-addr.arpa. 60 IN PTR crlf\013\010name.example.`,
	`9.2.0.192.in-addr.arpa. 60 IN PTR -hyphen.example.`,
	"bad_name.example. 60 IN A 192.0.2.9",
	"-hyphen.example. 60 IN A 192.0.2.9",
	// 192.0.2.10: classless delegation (RFC 2317), a CNAME to the PTR.
	"10.2.0.192.in-addr.arpa. 60 IN CNAME 10.0-25.2.0.192.in-addr.arpa.",
	"10.0-25.2.0.192.in-addr.arpa. 60 IN PTR Mixed.CASE.Example.",
	"mixed.case.example. 60 IN A 192.0.2.10",
	// 192.0.2.11: the name has a short TTL.
	"11.2.0.192.in-addr.arpa. 10 IN PTR short.example.",
	"short.example. 10 IN A 192.0.2.11",
	// 192.0.2.12: the name exists with an AAAA only (NODATA for A).
	"12.2.0.192.in-addr.arpa. 60 IN PTR v6only.example.",
	"v6only.example. 60 IN AAAA 2001:db8::12",
	// 192.0.2.13: the reverse name exists without a PTR (NODATA for PTR).
	"13.2.0.192.in-addr.arpa. 60 IN TXT \"no name\"",

	// CNAME chains. The server puts a chain in one answer as far as it
	// stays on one side of a zone cut (zoneCuts); the resolver asks for the
	// rest.
	//
	// 192.0.2.20: RFC 2317, the PTR is past a cut: a second query.
	"20.2.0.192.in-addr.arpa. 60 IN CNAME 20.16-31.2.0.192.in-addr.arpa.",
	"20.16-31.2.0.192.in-addr.arpa. 30 IN PTR delegated.example.",
	"delegated.example. 60 IN A 192.0.2.20",
	// 192.0.2.21: a loop within one answer.
	"21.2.0.192.in-addr.arpa. 60 IN CNAME loop.21.example.",
	"loop.21.example. 60 IN CNAME 21.2.0.192.in-addr.arpa.",
	// 192.0.2.22: a loop across two answers.
	"22.2.0.192.in-addr.arpa. 60 IN CNAME 22.elsewhere.example.",
	"22.elsewhere.example. 60 IN CNAME 22.2.0.192.in-addr.arpa.",
	// 192.0.2.23 and .24: 8 and 9 links in one answer (chainZone).
	// 192.0.2.25 and .26: 8 and 9 links across two answers (chainZone).
	// 192.0.2.27: the PTR name is a CNAME past a cut, followed for the A.
	"27.2.0.192.in-addr.arpa. 60 IN PTR alias.example.",
	"alias.example. 60 IN CNAME host.elsewhere.example.",
	"host.elsewhere.example. 60 IN A 192.0.2.27",
	// 192.0.2.28: the PTR name is a CNAME whose target does not confirm.
	"28.2.0.192.in-addr.arpa. 60 IN PTR alias28.example.",
	"alias28.example. 60 IN CNAME other.elsewhere.example.",
	"other.elsewhere.example. 60 IN A 192.0.2.99",
}

// zoneCuts are where the test server's zones meet: it answers a name on
// either side, but does not follow a CNAME across a cut in an answer.
var zoneCuts = []string{"16-31.2.0.192.in-addr.arpa.", "elsewhere.example."}

// chainZone adds the records of the chains of 192.0.2.23 to .26: for
// 192.0.2.N, links CNAMEs from the reverse name, of which the last across
// crosses a cut, to a PTR "chainN.example." that confirms.
func chainZone() []string {
	var zone []string
	for _, c := range []struct{ n, links, across int }{{23, 8, 0}, {24, 9, 0}, {25, 8, 4}, {26, 9, 4}} {
		name := fmt.Sprintf("%d.2.0.192.in-addr.arpa.", c.n)
		for i := 1; i <= c.links; i++ {
			target := fmt.Sprintf("link%d.%d.example.", i, c.n)
			if i > c.links-c.across {
				target = fmt.Sprintf("link%d.%d.elsewhere.example.", i, c.n)
			}
			zone = append(zone, fmt.Sprintf("%s 60 IN CNAME %s", name, target))
			name = target
		}
		zone = append(zone,
			fmt.Sprintf("%s 60 IN PTR chain%d.example.", name, c.n),
			fmt.Sprintf("chain%d.example. 60 IN A 192.0.2.%d", c.n, c.n))
	}
	return zone
}

// Special behaviours, by question name.
const (
	servfailName  = "3.2.0.192.in-addr.arpa."
	slowName      = "5.2.0.192.in-addr.arpa."
	truncatedName = "6.2.0.192.in-addr.arpa."
	spoofedName   = "7.2.0.192.in-addr.arpa."
)

// testServer is a name server on 127.0.0.1 (or ::1) serving testZone over
// UDP and TCP on the same port, counting the queries it gets.
type testServer struct {
	addr string // host:port of both UDP and TCP

	host      string
	refuse    bool
	slowDelay time.Duration // the wait ends with the test
	strays    []stray       // sent before the answer to spoofedName
	scripts   map[string]script

	zone  map[string][]dns.RR // by "name type", names lower-case
	names map[string]bool     // the names that exist, lower-case
	done  chan struct{}

	mu      sync.Mutex
	queries map[string]int // by "name type"; "" for all, "tcp" for those over TCP
	udp     []udpQuery     // every query over UDP, in order
}

// udpQuery is where a UDP query came from and the ID it carried.
type udpQuery struct {
	from netip.AddrPort
	id   uint16
}

// serverOption changes a testServer before it starts.
type serverOption func(*testServer)

// refusing makes the server answer REFUSED to everything.
func refusing(s *testServer) { s.refuse = true }

// slowBy sets how long slowName waits.
func slowBy(d time.Duration) serverOption { return func(s *testServer) { s.slowDelay = d } }

// onHost listens on host instead of 127.0.0.1.
func onHost(host string) serverOption { return func(s *testServer) { s.host = host } }

// A script makes what the server sends for a question from the answer it
// would send: the packets, none for silence.
type script func(resp *dns.Msg, udp bool) [][]byte

// answering makes the server follow s for the question name, of any type.
func answering(name string, s script) serverOption {
	return func(ts *testServer) { ts.scripts[strings.ToLower(name)] = s }
}

// strayFirst sends only st before the answer to spoofedName, instead of
// all the strays.
func strayFirst(st stray) serverOption { return func(s *testServer) { s.strays = []stray{st} } }

func newTestServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	s := &testServer{
		host:      "127.0.0.1",
		slowDelay: 2 * time.Second,
		strays:    strays,
		scripts:   make(map[string]script),
		zone:      make(map[string][]dns.RR),
		names:     make(map[string]bool),
		done:      make(chan struct{}),
		queries:   make(map[string]int),
	}
	for _, opt := range opts {
		opt(s)
	}
	for _, text := range slices.Concat(testZone, chainZone()) {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		k := zoneKey(rr.Header().Name, rr.Header().Rrtype)
		s.zone[k] = append(s.zone[k], rr)
		s.names[strings.ToLower(rr.Header().Name)] = true
	}
	pc, l := listenUDPAndTCP(t, s.host)
	s.addr = pc.LocalAddr().String()
	s.serve(t, &dns.Server{PacketConn: pc})
	s.serve(t, &dns.Server{Listener: l})
	t.Cleanup(func() { close(s.done) })
	return s
}

// listenUDPAndTCP opens a UDP and a TCP socket on one free port of host.
// The kernel picks the UDP port, which may be taken for TCP: then it tries
// another, a few times.
func listenUDPAndTCP(t testing.TB, host string) (net.PacketConn, net.Listener) {
	t.Helper()
	var err error
	for range 20 {
		pc, perr := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if perr != nil {
			t.Skipf("no UDP on %s: %v", host, perr)
		}
		var l net.Listener
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			return pc, l
		}
		pc.Close()
	}
	t.Fatal(err)
	return nil, nil
}

// serve runs srv until the test ends.
func (s *testServer) serve(t testing.TB, srv *dns.Server) {
	started := make(chan struct{})
	srv.Handler = dns.HandlerFunc(s.handle)
	srv.NotifyStartedFunc = func() { close(started) }
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		<-served
	})
}

func zoneKey(name string, qtype uint16) string {
	return strings.ToLower(name) + " " + dns.TypeToString[qtype]
}

// count returns the number of queries for name and type.
func (s *testServer) count(name string, qtype uint16) int {
	return s.counter(zoneKey(name, qtype))
}

// total returns the number of queries, or with tcp those over TCP.
func (s *testServer) total(tcp bool) int {
	if tcp {
		return s.counter("tcp")
	}
	return s.counter("")
}

func (s *testServer) counter(k string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[k]
}

func (s *testServer) handle(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	from, udp := w.RemoteAddr().(*net.UDPAddr)
	s.mu.Lock()
	s.queries[zoneKey(q.Name, q.Qtype)]++
	s.queries[""]++
	if udp {
		s.udp = append(s.udp, udpQuery{from.AddrPort(), req.Id})
	} else {
		s.queries["tcp"]++
	}
	s.mu.Unlock()

	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	switch name := strings.ToLower(q.Name); {
	case s.scripts[name] != nil:
		s.answer(resp, q)
		for _, p := range s.scripts[name](resp, udp) {
			w.Write(p)
		}
		return
	case s.refuse:
		resp.Rcode = dns.RcodeRefused
	case name == servfailName:
		resp.Rcode = dns.RcodeServerFailure
	case name == truncatedName && udp:
		resp.Truncated = true
	case name == slowName:
		select {
		case <-time.After(s.slowDelay):
		case <-s.done:
			return
		}
		s.answer(resp, q)
	case name == spoofedName && udp:
		s.answer(resp, q)
		for _, st := range s.strays {
			w.Write(st.packet(resp))
		}
	default:
		s.answer(resp, q)
	}
	w.WriteMsg(resp)
}

// answer fills resp from the zone: the records, NODATA or NXDOMAIN, after
// the CNAMEs from the question's name as far as they stay on its side of
// the zone cuts, each once.
func (s *testServer) answer(resp *dns.Msg, q dns.Question) {
	name := q.Name
	for {
		cnames := s.zone[zoneKey(name, dns.TypeCNAME)]
		if len(cnames) == 0 {
			break
		}
		resp.Answer = append(resp.Answer, cnames[0])
		target := cnames[0].(*dns.CNAME).Target
		if zoneOf(target) != zoneOf(name) || slices.ContainsFunc(resp.Answer, func(rr dns.RR) bool {
			return strings.EqualFold(rr.Header().Name, target)
		}) {
			return
		}
		name = target
	}
	resp.Answer = append(resp.Answer, s.zone[zoneKey(name, q.Qtype)]...)
	if len(resp.Answer) > 0 {
		return
	}
	if !s.names[strings.ToLower(name)] {
		resp.Rcode = dns.RcodeNameError
	}
	soa, _ := dns.NewRR("example. 60 IN SOA ns.example. admin.example. 1 3600 600 86400 5")
	resp.Ns = []dns.RR{soa}
}

// zoneOf returns the zone cut that name is under, "" for none.
func zoneOf(name string) string {
	for _, cut := range zoneCuts {
		if dns.IsSubDomain(cut, name) {
			return cut
		}
	}
	return ""
}

// A stray is a packet that a client must ignore when it comes before the
// real answer over UDP: made from that answer, it does not parse or does
// not answer the query.
type stray struct {
	name   string
	packet func(resp *dns.Msg) []byte
}

// strays are what the test server sends before the answer to spoofedName.
var strays = []stray{
	{"garbage", func(*dns.Msg) []byte { return []byte("\x12\x34 not a DNS message") }},
	{"shorter than a header", func(resp *dns.Msg) []byte { return []byte{byte(resp.Id >> 8), byte(resp.Id)} }},
	{"wrong ID", edited(func(m *dns.Msg) { m.Id++ })},
	{"wrong name", edited(func(m *dns.Msg) { m.Question[0].Name = "1.2.0.192.in-addr.arpa." })},
	{"wrong type", edited(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeA })},
	{"wrong class", edited(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })},
	{"not a response", edited(func(m *dns.Msg) { m.Response = false })},
}

// edited makes a stray of the answer changed by edit.
func edited(edit func(*dns.Msg)) func(*dns.Msg) []byte {
	return func(resp *dns.Msg) []byte {
		m := resp.Copy()
		edit(m)
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		return b
	}
}

// always sends what packet makes of the answer, over UDP and TCP.
func always(packet func(*dns.Msg) []byte) script {
	return func(resp *dns.Msg, _ bool) [][]byte { return [][]byte{packet(resp)} }
}

// truncatedThen sends an empty truncated answer over UDP, and what packet
// makes of the answer over TCP.
func truncatedThen(packet func(*dns.Msg) []byte) script {
	truncated := edited(func(m *dns.Msg) { m.Truncated, m.Answer = true, nil })
	return func(resp *dns.Msg, udp bool) [][]byte {
		if udp {
			return [][]byte{truncated(resp)}
		}
		return [][]byte{packet(resp)}
	}
}

// udpQueries returns the queries received over UDP so far.
func (s *testServer) udpQueries() []udpQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.udp)
}

// deadServer is a UDP socket that never answers.
func deadServer(t testing.TB) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// checkGoroutines fails the test if it leaves goroutines behind. Call it
// first, so that its cleanup runs last.
func checkGoroutines(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		for range 100 {
			if runtime.NumGoroutine() <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left running:\n%s", runtime.NumGoroutine()-before, buf[:runtime.Stack(buf, true)])
	})
}
