package mailproxy

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockopt reads an integer socket option of the socket behind v.
func sockopt(t *testing.T, v any, level, name int) int {
	t.Helper()
	var rc interface {
		Control(func(uintptr)) error
	}
	switch s := v.(type) {
	case *net.TCPListener:
		rc, _ = s.SyscallConn()
	case *net.TCPConn:
		rc, _ = s.SyscallConn()
	case *net.UnixListener:
		rc, _ = s.SyscallConn()
	default:
		t.Fatalf("no descriptor in %T", v)
	}
	var val int
	var err error
	if cerr := rc.Control(func(fd uintptr) { val, err = unix.GetsockoptInt(int(fd), level, name) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatalf("getsockopt(%d, %d): %v", level, name, err)
	}
	return val
}

// backlogOf reads the listen queue length of a TCP listener: Linux reports
// it in tcpi_sacked of TCP_INFO for a listening socket.
func backlogOf(t *testing.T, l *net.TCPListener) int {
	t.Helper()
	rc, _ := l.SyscallConn()
	var info *unix.TCPInfo
	var err error
	rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if err != nil {
		t.Fatal(err)
	}
	return int(info.Sacked)
}

func ipv6Available() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func TestOpenSocketOptions(t *testing.T) {
	type check struct {
		level, name, want int
	}
	sol, tcp, v6 := unix.SOL_SOCKET, unix.IPPROTO_TCP, unix.IPPROTO_IPV6
	tests := []struct {
		name   string
		ep     Endpoint
		lc     ListenConfig
		checks []check
		// accepted are checked on an accepted connection too: keepalive is
		// inherited from the listening socket.
		accepted []check
		backlog  int
	}{
		{name: "defaults", ep: Endpoint{"tcp4", "127.0.0.1:0"},
			checks: []check{{sol, unix.SO_KEEPALIVE, 0}, {sol, unix.SO_REUSEPORT, 0}},
			// Go's own 15s keepalive must not be added: nginx leaves the
			// system default when so_keepalive is not given.
			accepted: []check{{sol, unix.SO_KEEPALIVE, 0}}},
		{name: "buffers", ep: Endpoint{"tcp4", "127.0.0.1:0"}, lc: ListenConfig{RcvBuf: 64 << 10, SndBuf: 96 << 10},
			// Linux doubles the value for its bookkeeping.
			checks: []check{{sol, unix.SO_RCVBUF, 128 << 10}, {sol, unix.SO_SNDBUF, 192 << 10}}},
		{name: "reuseport", ep: Endpoint{"tcp4", "127.0.0.1:0"}, lc: ListenConfig{ReusePort: true},
			checks: []check{{sol, unix.SO_REUSEPORT, 1}}},
		{name: "keepalive on", ep: Endpoint{"tcp4", "127.0.0.1:0"}, lc: ListenConfig{KeepAlive: On},
			checks: []check{{sol, unix.SO_KEEPALIVE, 1}}, accepted: []check{{sol, unix.SO_KEEPALIVE, 1}}},
		{name: "keepalive off", ep: Endpoint{"tcp4", "127.0.0.1:0"}, lc: ListenConfig{KeepAlive: Off},
			checks: []check{{sol, unix.SO_KEEPALIVE, 0}}, accepted: []check{{sol, unix.SO_KEEPALIVE, 0}}},
		{name: "keepalive 30m::10", ep: Endpoint{"tcp4", "127.0.0.1:0"},
			lc:       ListenConfig{KeepIdle: 30 * time.Minute, KeepCnt: 10},
			checks:   []check{{sol, unix.SO_KEEPALIVE, 1}, {tcp, unix.TCP_KEEPIDLE, 1800}, {tcp, unix.TCP_KEEPCNT, 10}},
			accepted: []check{{sol, unix.SO_KEEPALIVE, 1}, {tcp, unix.TCP_KEEPIDLE, 1800}, {tcp, unix.TCP_KEEPCNT, 10}}},
		{name: "keepalive :75s:", ep: Endpoint{"tcp4", "127.0.0.1:0"}, lc: ListenConfig{KeepIntvl: 75 * time.Second},
			checks: []check{{sol, unix.SO_KEEPALIVE, 1}, {tcp, unix.TCP_KEEPINTVL, 75}}},
		{name: "backlog", ep: Endpoint{"tcp4", "127.0.0.1:0"}, lc: ListenConfig{Backlog: 37}, backlog: 37},
		{name: "ipv6only default", ep: Endpoint{"tcp6", "[::]:0"}, checks: []check{{v6, unix.IPV6_V6ONLY, 1}}},
		{name: "ipv6only off", ep: Endpoint{"tcp6", "[::]:0"}, lc: ListenConfig{IPv6Only: Off},
			checks: []check{{v6, unix.IPV6_V6ONLY, 0}}},
		{name: "ipv6only on", ep: Endpoint{"tcp6", "[::]:0"}, lc: ListenConfig{IPv6Only: On},
			checks: []check{{v6, unix.IPV6_V6ONLY, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ep.Network == "tcp6" && !ipv6Available() {
				t.Skip("no IPv6 on this machine")
			}
			ln, err := openSocket(context.Background(), tt.ep, tt.lc)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			for _, c := range tt.checks {
				if got := sockopt(t, ln, c.level, c.name); got != c.want {
					t.Errorf("listener option %d/%d = %d, want %d", c.level, c.name, got, c.want)
				}
			}
			if tt.backlog != 0 {
				if got := backlogOf(t, ln.(*net.TCPListener)); got != tt.backlog {
					t.Errorf("backlog = %d, want %d", got, tt.backlog)
				}
			}
			if tt.accepted != nil {
				checkAccepted(t, ln, func(c *net.TCPConn) {
					for _, ck := range tt.accepted {
						if got := sockopt(t, c, ck.level, ck.name); got != ck.want {
							t.Errorf("accepted option %d/%d = %d, want %d", ck.level, ck.name, got, ck.want)
						}
					}
				})
			}
		})
	}
}

func checkAccepted(t *testing.T, ln net.Listener, check func(*net.TCPConn)) {
	t.Helper()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check(c.(*net.TCPConn))
}

func TestOpenSocketMultipath(t *testing.T) {
	ln, err := openSocket(context.Background(), Endpoint{"tcp4", "127.0.0.1:0"}, ListenConfig{Multipath: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	proto := sockopt(t, ln, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if proto != unix.IPPROTO_MPTCP {
		// Go falls back to plain TCP when the kernel has no MPTCP.
		if _, err := os.Stat("/proc/sys/net/mptcp/enabled"); err == nil {
			b, _ := os.ReadFile("/proc/sys/net/mptcp/enabled")
			if string(b) == "1\n" {
				t.Fatalf("SO_PROTOCOL = %d, want IPPROTO_MPTCP (%d) with MPTCP enabled", proto, unix.IPPROTO_MPTCP)
			}
		}
		t.Skipf("kernel without MPTCP: SO_PROTOCOL = %d", proto)
	}
	plain, err := openSocket(context.Background(), Endpoint{"tcp4", "127.0.0.1:0"}, ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if p := sockopt(t, plain, unix.SOL_SOCKET, unix.SO_PROTOCOL); p != unix.IPPROTO_TCP {
		t.Errorf("plain socket protocol = %d, want TCP", p)
	}
}

func TestOpenSocketUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.sock")
	ln, err := openSocket(context.Background(), Endpoint{"unix", path}, ListenConfig{Backlog: 7})
	if err != nil {
		t.Fatal(err)
	}
	// A second listener on a live socket is refused, not stolen.
	if _, err := openSocket(context.Background(), Endpoint{"unix", path}, ListenConfig{}); err == nil {
		t.Fatal("second listener on a live unix socket was allowed")
	}
	// A stale socket file (its process gone) is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = openSocket(context.Background(), Endpoint{"unix", path}, ListenConfig{})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	// A regular file is never removed.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openSocket(context.Background(), Endpoint{"unix", path}, ListenConfig{}); err == nil {
		t.Fatal("listening over a regular file was allowed")
	}
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		addr    string
		want    []Endpoint
		wantErr string
	}{
		{addr: "110", want: []Endpoint{{"tcp4", "0.0.0.0:110"}}},
		{addr: "*:110", want: []Endpoint{{"tcp4", "0.0.0.0:110"}}},
		{addr: "127.0.0.1:110", want: []Endpoint{{"tcp4", "127.0.0.1:110"}}},
		{addr: "[::1]:110", want: []Endpoint{{"tcp6", "[::1]:110"}}},
		{addr: "[::]:110", want: []Endpoint{{"tcp6", "[::]:110"}}},
		{addr: "unix:/run/mail.sock", want: []Endpoint{{"unix", "/run/mail.sock"}}},
		{addr: "unix:", wantErr: `listen "unix:": empty unix socket path`},
		{addr: "127.0.0.1:99999", wantErr: `listen "127.0.0.1:99999": invalid port "99999"`},
		{addr: "abc", wantErr: `listen "abc": invalid port "abc"`},
		{addr: "[::1:110", wantErr: `listen "[::1:110": address [::1:110: missing ']' in address`},
		{addr: "no-such-host.invalid:110", wantErr: `listen "no-such-host.invalid:110": host not found`},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, err := ListenConfig{Address: tt.addr}.Endpoints(context.Background())
			if tt.wantErr != "" {
				if err == nil || len(err.Error()) < len(tt.wantErr) || err.Error()[:len(tt.wantErr)] != tt.wantErr {
					t.Fatalf("err = %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) || got[0] != tt.want[0] {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEndpointsHostName(t *testing.T) {
	eps, err := ListenConfig{Address: "localhost:1143"}.Endpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := net.DefaultResolver.LookupIPAddr(context.Background(), "localhost")
	if len(eps) == 0 || len(eps) > len(addrs) {
		t.Fatalf("localhost gave %v for addresses %v", eps, addrs)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		seen[net.JoinHostPort(a.IP.String(), "1143")] = true
	}
	for _, ep := range eps {
		if !seen[ep.Address] {
			t.Errorf("endpoint %v is not an address of localhost (%v)", ep, addrs)
		}
	}
}
