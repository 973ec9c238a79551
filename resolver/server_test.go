package resolver

import (
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

	zone map[string][]dns.RR // by "name type", names lower-case
	done chan struct{}

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

// strayFirst sends only st before the answer to spoofedName, instead of
// all the strays.
func strayFirst(st stray) serverOption { return func(s *testServer) { s.strays = []stray{st} } }

func newTestServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	s := &testServer{
		host:      "127.0.0.1",
		slowDelay: 2 * time.Second,
		strays:    strays,
		zone:      make(map[string][]dns.RR),
		done:      make(chan struct{}),
		queries:   make(map[string]int),
	}
	for _, opt := range opts {
		opt(s)
	}
	for _, text := range testZone {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		k := zoneKey(rr.Header().Name, rr.Header().Rrtype)
		s.zone[k] = append(s.zone[k], rr)
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

// answer fills resp from the zone: the records, NODATA or NXDOMAIN.
func (s *testServer) answer(resp *dns.Msg, q dns.Question) {
	resp.Answer = slices.Clone(s.zone[zoneKey(q.Name, q.Qtype)])
	if chain := s.zone[zoneKey(q.Name, dns.TypeCNAME)]; len(chain) > 0 && q.Qtype == dns.TypePTR {
		target := chain[0].(*dns.CNAME).Target
		resp.Answer = slices.Concat(chain, s.zone[zoneKey(target, q.Qtype)])
	}
	if len(resp.Answer) > 0 {
		return
	}
	if !s.exists(q.Name) {
		resp.Rcode = dns.RcodeNameError
	}
	soa, _ := dns.NewRR("example. 60 IN SOA ns.example. admin.example. 1 3600 600 86400 5")
	resp.Ns = []dns.RR{soa}
}

func (s *testServer) exists(name string) bool {
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeCNAME} {
		if len(s.zone[zoneKey(name, t)]) > 0 {
			return true
		}
	}
	return false
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
