package mailproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestParseDescriptors(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		err  string
	}{
		{in: "3;4;5;", want: []int{3, 4, 5}},
		{in: "3:7", want: []int{3, 7}},
		{in: "", want: nil},
		{in: "3;x;", err: `invalid socket number "x"`},
		{in: "2;", err: `invalid socket number "2"`},
		{in: "3;4;3;", err: "socket 3 named twice"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDescriptors(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("%v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestSystemdDescriptors(t *testing.T) {
	tests := []struct {
		name, pid, n string
		want         []int
		err          bool
	}{
		{name: "ours", pid: "42", n: "3", want: []int{3, 4, 5}},
		{name: "none passed", pid: "42", n: "0", want: []int{}},
		{name: "another process's", pid: "41", n: "2"},
		{name: "not activated"},
		{name: "no count", pid: "42"},
		{name: "bad count", pid: "42", n: "two", err: true},
		{name: "negative count", pid: "42", n: "-1", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := systemdDescriptors(tt.pid, tt.n, 42)
			if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
				t.Fatalf("%v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// The variables of a socket activation meant for another process are
// unset and its descriptors left alone.
func TestSystemdListenersForAnotherProcess(t *testing.T) {
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "2")
	t.Setenv("LISTEN_FDNAMES", "imap:pop3")
	lns, err := SystemdListeners()
	if lns != nil || err != nil {
		t.Fatalf("%v, %v", lns, err)
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if _, set := os.LookupEnv(v); set {
			t.Errorf("%s still set", v)
		}
	}
}

// dup returns a duplicate of the descriptor behind v, for a test to hand
// over as a parent process would.
func dup(t *testing.T, v any) int {
	t.Helper()
	rc, err := v.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := control(rc, func(s uintptr) (err error) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return fd
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

func TestInheritedListeners(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	fd := dup(t, ln)
	ln.Close()

	t.Setenv("TEST_INHERIT", fmt.Sprintf("%d;", fd))
	lns, err := InheritedListeners("TEST_INHERIT")
	if err != nil || len(lns) != 1 || lns[0].Addr().String() != addr {
		t.Fatalf("%v, %v; want a listener on %s", lns, err, addr)
	}
	if _, set := os.LookupEnv("TEST_INHERIT"); set {
		t.Error("the variable is still set")
	}
	if !testutil.Accepting(addr) {
		t.Error("the inherited socket does not accept")
	}
	lns[0].Close()
	if testutil.Accepting(addr) {
		t.Error("closing the listener leaves the socket open: the inherited descriptor leaked")
	}
	lns, err = InheritedListeners("TEST_INHERIT")
	if lns != nil || err != nil {
		t.Errorf("without the variable: %v, %v", lns, err)
	}
}

// Descriptors that are not listening sockets are refused and left open:
// they are not the proxy's to close.
func TestInheritedListenersRefused(t *testing.T) {
	file, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tests := []struct {
		name string
		fd   int
	}{
		{"regular file", dup(t, file)},
		{"connection", dup(t, conn)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer unix.Close(tt.fd)
			t.Setenv("TEST_INHERIT", fmt.Sprintf("%d;", tt.fd))
			lns, err := InheritedListeners("TEST_INHERIT")
			if lns != nil || !errors.Is(err, errNotListening) {
				t.Fatalf("%v, %v; want %v", lns, err, errNotListening)
			}
			if !isOpen(tt.fd) {
				t.Error("the descriptor was closed")
			}
		})
	}
}

// A Proxy serves the inherited sockets that match its listen directives,
// with their parameters applied, and closes the others.
func TestProxyAdoptsInherited(t *testing.T) {
	listen := func(network, addr string) net.Listener {
		t.Helper()
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	v4 := listen("tcp4", "127.0.0.1:0")
	unixPath := filepath.Join(t.TempDir(), "imap.sock")
	unixLn := listen("unix", unixPath)
	other := listen("tcp4", "127.0.0.1:0")
	inherited := []net.Listener{v4, unixLn, other}
	listens := []ListenConfig{
		{Address: v4.Addr().String(), RcvBuf: 32 << 10, Backlog: 24},
		{Address: "unix:" + unixPath},
	}
	var v6 net.Listener
	if ipv6Available() {
		v6 = listen("tcp6", "[::1]:0")
		inherited = append(inherited, v6)
		listens = append(listens, ListenConfig{Address: v6.Addr().String(), SndBuf: 32 << 10})
	}
	// A client that connected before the Proxy started waits in the queue
	// and is served.
	early := testutil.Dial(t, "tcp", v4.Addr().String())
	var logs bytes.Buffer
	p := &Proxy{
		Config:    &Config{Servers: []ServerConfig{{Name: "s", Listen: listens, Server: &imap.Server{}}}},
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
		Inherited: inherited,
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	if got := early.Line(); !strings.HasSuffix(got, "IMAP4 ready") {
		t.Errorf("greeting of the client that came first: %q", got)
	}
	p.mu.Lock()
	var served []net.Listener
	for _, s := range p.sockets {
		served = append(served, s.ln)
	}
	p.mu.Unlock()
	if len(served) != len(listens) {
		t.Fatalf("%d sockets, want %d", len(served), len(listens))
	}
	for _, ln := range inherited {
		if ln != other && !slices.Contains(served, ln) {
			t.Errorf("%v is not served: another socket was opened", ln.Addr())
		}
		network := "tcp"
		if ln == unixLn {
			network = "unix"
		}
		if ln == other {
			if _, err := other.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("the inherited socket that matches nothing accepts (%v)", err)
			}
			continue
		}
		if got := testutil.Dial(t, network, ln.Addr().String()).Line(); !strings.HasSuffix(got, "IMAP4 ready") {
			t.Errorf("greeting on %v: %q", ln.Addr(), got)
		}
	}
	if got := sockopt(t, v4, unix.SOL_SOCKET, unix.SO_RCVBUF); got != 64<<10 {
		t.Errorf("rcvbuf %d, want %d", got, 64<<10)
	}
	if got := backlogOf(t, v4.(*net.TCPListener)); got != 24 {
		t.Errorf("backlog %d, want 24", got)
	}
	if v6 != nil {
		if got := sockopt(t, v6, unix.SOL_SOCKET, unix.SO_SNDBUF); got != 64<<10 {
			t.Errorf("ipv6 sndbuf %d, want %d", got, 64<<10)
		}
	}
	if want := "inherited socket matches no listen directive; closed\" listen=" + other.Addr().String(); !strings.Contains(logs.String(), want) {
		t.Errorf("no warning %q in the log:\n%s", want, logs.String())
	}
}

// A Proxy that cannot start closes the inherited sockets it was given.
func TestProxyClosesInheritedOnFailure(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p := &Proxy{
		Config: &Config{Servers: []ServerConfig{{Name: "s", Server: &imap.Server{},
			Listen: []ListenConfig{{Address: ln.Addr().String()}, {Address: busy.Addr().String()}}}}},
		Logger:    slog.New(slog.DiscardHandler),
		Inherited: []net.Listener{ln},
	}
	if err := p.Start(); err == nil {
		p.Close()
		t.Fatal("Start succeeded on an address in use")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the inherited socket is still open (%v)", err)
	}
}

// One Proxy hands its sockets to another, as an old binary hands them to
// the new one: while the first drains, the second accepts on the same
// sockets, and no client is refused or left without a greeting.
func TestProxyFilesHandOver(t *testing.T) {
	unixPath := filepath.Join(t.TempDir(), "imap.sock")
	addr := testutil.FreeAddr(t)
	cfg := func(capability string) *Config {
		return &Config{Servers: []ServerConfig{{Name: "s", Server: &imap.Server{Capabilities: []string{"IMAP4rev1", capability}},
			Listen: []ListenConfig{{Address: addr}, {Address: "unix:" + unixPath}}}}}
	}
	old := &Proxy{Config: cfg("OLD"), Logger: slog.New(slog.DiscardHandler)}
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	session := testutil.Dial(t, "tcp", addr)
	session.Line()

	files, err := old.Files()
	if err != nil || len(files) != 2 {
		t.Fatalf("%d files, %v", len(files), err)
	}
	var inherited []net.Listener
	for _, f := range files {
		ln, err := net.FileListener(f)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		inherited = append(inherited, ln)
	}
	successor := &Proxy{Config: cfg("NEW"), Logger: slog.New(slog.DiscardHandler), Inherited: inherited}
	if err := successor.Start(); err != nil {
		t.Fatal(err)
	}
	defer successor.Close()

	// In one process, the first of two accept loops on a socket wins every
	// connection; processes share them (see examples/mailproxy).
	loop := testutil.StartConnLoop(addr, 4, "OLD", "NEW")
	testutil.WaitFor(t, "the clients to connect", func() bool { return loop.Counts()["OLD"] > 100 })
	shutdown := make(chan error, 1)
	go func() { shutdown <- old.Shutdown(context.Background()) }()
	testutil.WaitFor(t, "the old proxy to stop accepting", func() bool {
		old.mu.Lock()
		defer old.mu.Unlock()
		return old.sockets[(Endpoint{"unix", unixPath}).key()].isClosed()
	})
	before := loop.Counts()["NEW"]
	testutil.WaitFor(t, "the new proxy to answer alone", func() bool { return loop.Counts()["NEW"] > before+100 })
	counts := loop.Stop()
	t.Logf("connections: %v", counts)
	if len(counts) != 2 {
		t.Errorf("connections that failed: %v", counts)
	}

	if got := session.Cmd("a CAPABILITY", "a "); !strings.Contains(got[0], "OLD") {
		t.Errorf("the session opened before the handover got %q", got)
	}
	select {
	case err := <-shutdown:
		t.Fatalf("the old proxy stopped with a session open (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	session.Cmd("b LOGOUT", "b OK")
	if err := <-shutdown; err != nil {
		t.Errorf("old proxy's Shutdown: %v", err)
	}
	if got := testutil.Dial(t, "unix", unixPath).Line(); !strings.HasSuffix(got, "IMAP4 ready") {
		t.Errorf("unix socket after the old proxy stopped: %q", got)
	}
	successor.Close()
	if testutil.Accepting(addr) {
		t.Error("the socket outlives both proxies: a descriptor leaked")
	}
}
