package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

// A packet that does not answer the query, coming first, is dropped and
// the real answer taken from the same socket: the query is not sent again.
func TestStraysIgnored(t *testing.T) {
	checkGoroutines(t)
	for _, st := range strays {
		t.Run(st.name, func(t *testing.T) {
			s := newTestServer(t, strayFirst(st))
			r, _ := newTestResolver(t, Config{Servers: []string{s.addr}})
			host, err := r.LookupHost(t.Context(), addr("192.0.2.7"))
			if err != nil || host != "spoofed.example" {
				t.Errorf("LookupHost = %q, %v; want spoofed.example", host, err)
			}
			if n := s.count(spoofedName, dns.TypePTR); n != 1 {
				t.Errorf("the PTR was asked %d times, want once", n)
			}
		})
	}
}

// A truncated answer over UDP makes the same server be asked once over TCP.
func TestTruncatedRetriedOverTCP(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}})
	if host, err := r.LookupHost(t.Context(), addr("192.0.2.6")); err != nil || host != "tcp.example" {
		t.Fatalf("LookupHost = %q, %v", host, err)
	}
	if udp, tcp := s.count(truncatedName, dns.TypePTR)-s.total(true), s.total(true); udp != 1 || tcp != 1 {
		t.Errorf("the PTR was asked %d times over UDP and %d over TCP, want once each", udp, tcp)
	}
}

// Every UDP query comes from a new socket, so from a port the kernel
// picks, and carries a random ID. Birthday collisions among 20 ports or
// IDs are rare; three are not expected.
func TestFreshPortAndID(t *testing.T) {
	checkGoroutines(t)
	s := newTestServer(t)
	r, _ := newTestResolver(t, Config{Servers: []string{s.addr}, CacheSize: -1})
	for range 10 {
		if host := r.ClientHost(t.Context(), addr("192.0.2.1")); host != "good.example" {
			t.Fatalf("ClientHost = %q", host)
		}
	}
	queries := s.udpQueries()
	ports, ids := make(map[uint16]bool), make(map[uint16]bool)
	steps := make(map[uint16]bool) // differences between successive IDs
	for i, q := range queries {
		ports[q.from.Port()] = true
		ids[q.id] = true
		if i > 0 {
			steps[q.id-queries[i-1].id] = true
		}
	}
	if len(ports) < len(queries)-2 {
		t.Errorf("%d queries from %d source ports", len(queries), len(ports))
	}
	if len(ids) < len(queries)-2 || len(steps) == 1 {
		t.Errorf("%d queries with %d IDs, %d steps between them", len(queries), len(ids), len(steps))
	}
}
