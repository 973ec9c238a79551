package resolver

import (
	"testing"
)

func BenchmarkClientHostCached(b *testing.B) {
	s := newTestServer(b)
	r, _ := newTestResolver(b, Config{Servers: []string{s.addr}})
	ip := addr("192.0.2.1")
	if host := r.ClientHost(b.Context(), ip); host != "good.example" {
		b.Fatal(host)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.ClientHost(b.Context(), ip)
	}
}

// BenchmarkClientHostMiss asks the test server over UDP every time: a PTR
// and an A query per lookup.
func BenchmarkClientHostMiss(b *testing.B) {
	s := newTestServer(b)
	r, _ := newTestResolver(b, Config{Servers: []string{s.addr}, CacheSize: -1})
	ip := addr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		if host := r.ClientHost(b.Context(), ip); host != "good.example" {
			b.Fatal(host)
		}
	}
}
