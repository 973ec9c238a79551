package mailproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

func newTestLimit(clock *testutil.Clock, cl ClientLimits) *connLimit {
	l := newConnLimit(-1, testutil.Discard)
	l.clients.now = clock.Now
	l.setClientLimits(cl)
	return l
}

// The failures count within a sliding window: a client is refused from
// its LoginFailures-th failure until the oldest of them leaves the window.
func TestLoginFailuresWindow(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC))
	l := newTestLimit(clock, ClientLimits{LoginFailures: 3, LoginWindow: 10 * time.Minute})
	alice, bob := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.0.2.8")
	steps := []struct {
		advance time.Duration
		fail    bool
		blocked bool
	}{
		{0, true, false},
		{time.Minute, true, false},
		{time.Minute, true, true},                  // three in two minutes
		{7*time.Minute + time.Second, false, true}, // 9m01s after the first
		{time.Minute, false, false},                // the first has left the window
		{0, true, true},                            // three again within ten minutes
		{10 * time.Minute, false, false},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		if st.fail {
			l.LoginFailed(alice)
		}
		err := l.AdmitLogin(alice)
		if blocked := errors.Is(err, session.ErrTooManyFailures); blocked != st.blocked {
			t.Fatalf("step %d: AdmitLogin = %v, want blocked %v", i, err, st.blocked)
		}
		err = l.AdmitClient(alice)
		if errors.Is(err, session.ErrTooManyFailures) != st.blocked {
			t.Fatalf("step %d: AdmitClient = %v, want blocked %v", i, err, st.blocked)
		}
		if err == nil {
			l.ReleaseClient(alice)
		}
		if err := l.AdmitLogin(bob); err != nil {
			t.Fatalf("step %d: another client refused: %v", i, err)
		}
	}
}

// An IPv6 client is its /64; an IPv4 one, its address.
func TestClientOf(t *testing.T) {
	l := newTestLimit(testutil.NewClock(time.Now()), ClientLimits{Connections: 1})
	tests := []struct{ first, second string }{
		{"2001:db8:0:1::1", "2001:db8:0:1:ffff::2"},
		{"192.0.2.1", "192.0.2.1"},
	}
	for _, tt := range tests {
		if err := l.AdmitClient(netip.MustParseAddr(tt.first)); err != nil {
			t.Fatal(err)
		}
		if err := l.AdmitClient(netip.MustParseAddr(tt.second)); !errors.Is(err, session.ErrTooManyConnections) {
			t.Errorf("%s after %s: %v, want one client", tt.second, tt.first, err)
		}
	}
	for _, other := range []string{"2001:db8:0:2::1", "192.0.2.2"} {
		if err := l.AdmitClient(netip.MustParseAddr(other)); err != nil {
			t.Errorf("%s: %v, want a client of its own", other, err)
		}
	}
}

// Limits that a reload brings in count the sessions already open.
func TestClientLimitsReloaded(t *testing.T) {
	l := newTestLimit(testutil.NewClock(time.Now()), ClientLimits{})
	a := netip.MustParseAddr("192.0.2.1")
	for range 2 {
		if err := l.AdmitClient(a); err != nil {
			t.Fatal(err)
		}
	}
	l.setClientLimits(ClientLimits{Connections: 2})
	if err := l.AdmitClient(a); !errors.Is(err, session.ErrTooManyConnections) {
		t.Fatalf("third session under a limit of two: %v", err)
	}
	l.ReleaseClient(a)
	if err := l.AdmitClient(a); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// The clients whose failures have all left the window are forgotten: a
// flood of failures from many addresses does not grow the table for good.
func TestLoginFailuresSwept(t *testing.T) {
	clock := testutil.NewClock(time.Now())
	l := newTestLimit(clock, ClientLimits{LoginFailures: 5, LoginWindow: time.Minute})
	for i := range 10 * minSweep {
		l.LoginFailed(netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)))
		if i%minSweep == 0 {
			clock.Advance(time.Minute)
		}
	}
	if n := len(l.clients.failures); n > 2*minSweep {
		t.Errorf("%d clients remembered, want at most %d", n, 2*minSweep)
	}
}
