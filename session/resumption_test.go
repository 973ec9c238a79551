package session

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

// len returns the number of sessions kept.
func (c *SessionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func TestSessionCacheBounds(t *testing.T) {
	c := NewSessionCache(2)
	now := time.Now()
	var ids [][]byte
	for i := range 3 {
		id, err := c.put([]byte{byte(i)}, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 32 {
			t.Fatalf("id of %d bytes", len(id))
		}
		ids = append(ids, id)
	}
	if c.len() != 2 || c.get(ids[0], now) != nil || c.get(ids[2], now)[0] != 2 {
		t.Errorf("%d sessions kept; the oldest must go first", c.len())
	}
	if c.get(ids[1], now.Add(2*time.Minute)) != nil || c.len() != 1 {
		t.Error("an expired session was returned or kept")
	}
	if c := NewSessionCache(0); c.max != 1 {
		t.Errorf("a cache of %d sessions", c.max)
	}
}

// resumptionServer serves r on a real socket, with the clock's time:
// each connection gets the handshake, one byte ("x") and the end.
func resumptionServer(t *testing.T, cert tls.Certificate, r Resumption, clock *testutil.Clock) string {
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, Time: clock.Now}
	r.Apply(cfg)
	ln := testutil.Accept(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, cfg)
		if tc.Handshake() == nil {
			tc.Write([]byte("x"))
			tc.Close()
		}
	})
	return ln.Addr().String()
}

// resumed connects to addr and reports whether the session was resumed,
// once the server's byte has arrived (which, in TLS 1.3, brings the
// tickets).
func resumed(t *testing.T, addr string, client *tls.Config) bool {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState().DidResume
}

// A client connects to the first server, then, after wait on the
// servers' clock, to the second (the first again when second is nil).
func TestResumption(t *testing.T) {
	ca := testutil.NewCA(t, "resumption test CA")
	cert := ca.Issue(t, testutil.CertOptions{}).TLS()
	keyA, keyB := [32]byte{'A'}, [32]byte{'B'}
	shared, sharedToo := NewSessionCache(10), NewSessionCache(10)
	tests := []struct {
		name    string
		first   Resumption
		second  *Resumption
		wait    time.Duration
		resumed bool
	}{
		{"tickets", Resumption{Tickets: true}, nil, 0, true},
		{"tickets within the timeout", Resumption{Tickets: true, Timeout: 10 * time.Minute}, nil, 9 * time.Minute, true},
		{"tickets after the timeout", Resumption{Tickets: true, Timeout: 10 * time.Minute}, nil, 11 * time.Minute, false},
		{"tickets after the default timeout", Resumption{Tickets: true}, nil, 6 * time.Minute, false},
		{"a ticket key kept", Resumption{Tickets: true, TicketKeys: [][32]byte{keyA}}, &Resumption{Tickets: true, TicketKeys: [][32]byte{keyB, keyA}}, 0, true},
		{"a ticket key gone", Resumption{Tickets: true, TicketKeys: [][32]byte{keyA}}, &Resumption{Tickets: true, TicketKeys: [][32]byte{keyB}}, 0, false},
		{"keys of crypto/tls's own", Resumption{Tickets: true}, &Resumption{Tickets: true}, 0, false},
		{"cache", Resumption{Cache: NewSessionCache(10)}, nil, 0, true},
		{"cache after the timeout", Resumption{Cache: NewSessionCache(10), Timeout: time.Minute}, nil, 2 * time.Minute, false},
		{"shared cache", Resumption{Cache: shared}, &Resumption{Cache: shared}, 0, true},
		{"tickets on leave the cache out", Resumption{Tickets: true, Cache: sharedToo}, &Resumption{Tickets: true, Cache: sharedToo}, 0, false},
		{"neither", Resumption{}, nil, 0, false},
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tt := range tests {
			t.Run(tls.VersionName(version)+"/"+tt.name, func(t *testing.T) {
				clock := testutil.NewClock(time.Now())
				first := resumptionServer(t, cert, tt.first, clock)
				second := first
				if tt.second != nil {
					second = resumptionServer(t, cert, *tt.second, clock)
				}
				client := &tls.Config{ServerName: "localhost", RootCAs: testutil.Pool(ca), MaxVersion: version,
					ClientSessionCache: tls.NewLRUClientSessionCache(8)}
				if resumed(t, first, client) {
					t.Fatal("the first connection resumed")
				}
				clock.Advance(tt.wait)
				if got := resumed(t, second, client); got != tt.resumed {
					t.Errorf("resumed %v, want %v", got, tt.resumed)
				}
			})
		}
	}
}

// Two servers with one session cache resume each other's sessions; with
// tickets off, the ticket a client gets is the ID of its session there.
func ExampleResumption() {
	cache := NewSessionCache(20480)
	imaps := &tls.Config{} // and its Certificates
	pop3s := &tls.Config{}
	for _, cfg := range []*tls.Config{imaps, pop3s} {
		Resumption{Cache: cache, Timeout: 10 * time.Minute}.Apply(cfg)
	}
	fmt.Println("tickets disabled:", imaps.SessionTicketsDisabled)

	var none tls.Config
	Resumption{}.Apply(&none)
	fmt.Println("tickets disabled:", none.SessionTicketsDisabled)
	// Output:
	// tickets disabled: false
	// tickets disabled: true
}
