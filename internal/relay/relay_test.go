package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// relayKinds are the connection kinds Start is tested with:
//   - tcp: both sides are *net.TCPConn, the zero-copy (splice) path;
//   - wrapped: the same sockets behind a wrapper that hides their type but
//     keeps CloseWrite, as a PROXY-protocol or metrics wrapper would: the
//     buffered path;
//   - pipe: the client side is a net.Pipe, which cannot half-close.
var relayKinds = []string{"tcp", "wrapped", "pipe"}

// relayTest is one relayed session: the client and backend programs at
// both ends, and the two connections Start gets.
type relayTest struct {
	client, backend           net.Conn // the programs' ends
	proxyClient, proxyBackend net.Conn // Start's ends
}

// newRelayTest opens the connections of a session of the given kind on
// 127.0.0.1. The programs' ends have a deadline, so a broken relay fails
// the test instead of hanging it; everything is closed when the test ends.
func newRelayTest(t testing.TB, kind string) *relayTest {
	t.Helper()
	rt := &relayTest{}
	var proxyClient, proxyBackend *net.TCPConn
	if kind == "pipe" {
		rt.client, rt.proxyClient = net.Pipe()
	} else {
		rt.client, proxyClient = loopbackTCP(t)
		rt.proxyClient = proxyClient
	}
	rt.proxyBackend, rt.backend = loopbackTCP(t)
	proxyBackend = rt.proxyBackend.(*net.TCPConn)
	if kind == "wrapped" {
		rt.proxyClient = opaqueConn{proxyClient}
		rt.proxyBackend = opaqueConn{proxyBackend}
	}
	if _, ok := t.(*testing.B); !ok {
		deadline := time.Now().Add(20 * time.Second)
		rt.client.SetDeadline(deadline)
		rt.backend.SetDeadline(deadline)
	}
	for _, c := range []net.Conn{rt.client, rt.proxyClient, rt.proxyBackend, rt.backend} {
		t.Cleanup(func() { c.Close() })
	}
	return rt
}

// loopbackTCP returns both ends of a loopback TCP connection.
func loopbackTCP(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// opaqueConn hides a connection's concrete type and keeps its half-close.
type opaqueConn struct{ net.Conn }

func (c opaqueConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

type relayOutcome struct {
	stats Stats
	err   error
	took  time.Duration
}

// start relays the session with Start on the proxy's ends.
func (rt *relayTest) start(ctx context.Context, clientPending, backendPending string, idle time.Duration) <-chan relayOutcome {
	out := make(chan relayOutcome, 1)
	begin := time.Now()
	s := Session{
		Client: rt.proxyClient, Backend: rt.proxyBackend,
		ClientPending: []byte(clientPending), BackendPending: []byte(backendPending),
		Idle: idle,
	}
	Start(ctx, s, func(stats Stats, err error) { out <- relayOutcome{stats, err, time.Since(begin)} })
	return out
}

// waitRelay waits at most d for the session to end.
func waitRelay(t testing.TB, out <-chan relayOutcome, d time.Duration) relayOutcome {
	t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(d):
		t.Fatalf("the session has not ended after %v", d)
		return relayOutcome{}
	}
}

// halfClose half-closes c, or closes it when it cannot half-close.
func halfClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// readExactly reads len(want) bytes from c and compares them with want.
func readExactly(t *testing.T, c net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectClosed checks that c's peer has closed: a read ends at once with
// EOF or a reset, not with the test deadline.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n > 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open: read %d bytes, %v", n, err)
	}
}

// noGoroutineLeak fails the test when, after the test and its cleanups, the
// number of goroutines has not come back to what it was within five
// seconds.
func noGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		var n int
		for range 500 {
			if n = runtime.NumGoroutine(); n <= base {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines leaked: %d, was %d\n%s", n, base, buf[:runtime.Stack(buf, true)])
	})
}

func TestRelayPath(t *testing.T) {
	noGoroutineLeak(t)
	tcp := newRelayTest(t, "tcp")
	pipe := newRelayTest(t, "pipe")
	wrapped := newRelayTest(t, "wrapped")
	zeroCopy := pathBuffered
	if runtime.GOOS == "linux" {
		zeroCopy = pathZeroCopy
	}
	for _, tc := range []struct {
		name            string
		client, backend net.Conn
		want            copyPath
	}{
		{"tcp+tcp", tcp.proxyClient, tcp.proxyBackend, zeroCopy},
		{"pipe+tcp", pipe.proxyClient, pipe.proxyBackend, pathBuffered},
		{"tcp+pipe", tcp.proxyClient, pipe.proxyClient, pathBuffered},
		{"wrapped", wrapped.proxyClient, wrapped.proxyBackend, pathBuffered},
		{"tcp+wrapped", tcp.proxyClient, wrapped.proxyBackend, pathBuffered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := relayPath(tc.client, tc.backend); got != tc.want {
				t.Errorf("path %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRelayBothWays(t *testing.T) {
	for _, kind := range relayKinds {
		t.Run(kind, func(t *testing.T) {
			noGoroutineLeak(t)
			rt := newRelayTest(t, kind)
			// The dialogue before proxying leaves deadlines behind: Start
			// must clear them.
			rt.proxyClient.SetDeadline(time.Now())
			rt.proxyBackend.SetDeadline(time.Now())

			const (
				clientPending  = "a1 NOOP\r\na2 NOOP\r\n"
				backendPending = "* 1 EXISTS\r\n"
			)
			out := rt.start(t.Context(), clientPending, backendPending, 5*time.Second)
			go rt.client.Write([]byte("a3 LOGOUT\r\n"))
			readExactly(t, rt.backend, clientPending+"a3 LOGOUT\r\n")
			rt.backend.Write([]byte("* BYE\r\na3 OK\r\n"))
			readExactly(t, rt.client, backendPending+"* BYE\r\na3 OK\r\n")

			// The client leaves, then the backend.
			rt.client.Close()
			if n, err := rt.backend.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("backend read %d bytes, %v; want EOF", n, err)
			}
			rt.backend.Close()

			o := waitRelay(t, out, 5*time.Second)
			if o.err != nil {
				t.Errorf("session: %v", o.err)
			}
			want := Stats{
				ToBackend: int64(len(clientPending + "a3 LOGOUT\r\n")),
				ToClient:  int64(len(backendPending + "* BYE\r\na3 OK\r\n")),
			}
			if o.stats != want {
				t.Errorf("stats %+v, want %+v", o.stats, want)
			}
		})
	}
}

// TestRelayLarge moves 64 MiB from the client to the backend and compares
// their SHA-256.
func TestRelayLarge(t *testing.T) {
	const size = 64 << 20
	block := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(block)
	for _, kind := range relayKinds {
		t.Run(kind, func(t *testing.T) {
			noGoroutineLeak(t)
			rt := newRelayTest(t, kind)
			out := rt.start(t.Context(), "", "", 5*time.Second)

			sent := make(chan []byte, 1)
			go func() {
				h := sha256.New()
				for i := range size / len(block) {
					block := bytes.Clone(block)
					block[0] = byte(i)
					h.Write(block)
					if _, err := rt.client.Write(block); err != nil {
						t.Errorf("client write: %v", err)
						break
					}
				}
				halfClose(rt.client)
				sent <- h.Sum(nil)
			}()
			h := sha256.New()
			n, err := io.Copy(h, rt.backend)
			if err != nil || n != size {
				t.Fatalf("backend received %d bytes, %v; want %d", n, err, size)
			}
			if got, want := h.Sum(nil), <-sent; !bytes.Equal(got, want) {
				t.Errorf("backend received SHA-256 %x, client sent %x", got, want)
			}
			rt.backend.Close()
			o := waitRelay(t, out, 5*time.Second)
			if o.err != nil || o.stats != (Stats{ToBackend: size}) {
				t.Errorf("session: %+v, %v; want %d bytes to the backend", o.stats, o.err, size)
			}
		})
	}
}

// TestRelayHalfClose: the client ends its input, the backend answers after
// reading the end, and the client receives the answer.
func TestRelayHalfClose(t *testing.T) {
	for _, kind := range []string{"tcp", "wrapped"} {
		t.Run(kind, func(t *testing.T) {
			noGoroutineLeak(t)
			rt := newRelayTest(t, kind)
			out := rt.start(t.Context(), "", "", 5*time.Second)

			rt.client.Write([]byte("QUIT\r\n"))
			rt.client.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(rt.backend)
			if err != nil || string(got) != "QUIT\r\n" {
				t.Fatalf("backend read %q, %v", got, err)
			}
			rt.backend.Write([]byte("+OK bye after your EOF\r\n"))
			rt.backend.Close()
			got, err = io.ReadAll(rt.client)
			if err != nil || string(got) != "+OK bye after your EOF\r\n" {
				t.Fatalf("client read %q, %v", got, err)
			}
			o := waitRelay(t, out, 5*time.Second)
			if o.err != nil {
				t.Errorf("session: %v", o.err)
			}
			if want := (Stats{ToBackend: 6, ToClient: 24}); o.stats != want {
				t.Errorf("stats %+v, want %+v", o.stats, want)
			}
		})
	}
}

func TestRelayIdle(t *testing.T) {
	const idle = 100 * time.Millisecond
	for _, kind := range relayKinds {
		t.Run(kind, func(t *testing.T) {
			noGoroutineLeak(t)
			rt := newRelayTest(t, kind)
			o := waitRelay(t, rt.start(t.Context(), "", "", idle), 5*time.Second)
			if !errors.Is(o.err, ErrIdle) {
				t.Errorf("session: %v, want ErrIdle", o.err)
			}
			if o.took < idle || o.took >= 3*time.Second {
				t.Errorf("session ended after %v with idle %v", o.took, idle)
			}
			expectClosed(t, rt.client)
			expectClosed(t, rt.backend)
		})
	}
}

// TestRelayTrickle: bytes that trickle in keep a session alive past its
// idle timeout, on both paths: the idle timer sees the time of the last
// byte moved.
func TestRelayTrickle(t *testing.T) {
	// A byte every 50ms against a 400ms idle timeout, for half a second:
	// room for the pauses of a loaded machine (with 30ms against 100ms, a
	// parallel -race run cut it short).
	const (
		idle   = 400 * time.Millisecond
		every  = 50 * time.Millisecond
		nbytes = 10
	)
	for _, kind := range []string{"tcp", "wrapped"} {
		t.Run(kind, func(t *testing.T) {
			noGoroutineLeak(t)
			rt := newRelayTest(t, kind)
			if kind == "tcp" && runtime.GOOS == "linux" {
				if p := relayPath(rt.proxyClient, rt.proxyBackend); p != pathZeroCopy {
					t.Fatalf("path %v, want zero-copy", p)
				}
			}
			out := rt.start(t.Context(), "", "", idle)
			go func() {
				for range nbytes {
					time.Sleep(every)
					rt.client.Write([]byte{'.'})
				}
			}()
			readExactly(t, rt.backend, strings.Repeat(".", nbytes))
			select {
			case o := <-out:
				t.Fatalf("session ended during the traffic after %v: %v", o.took, o.err)
			default:
			}
			halfClose(rt.client)
			rt.backend.Close()
			o := waitRelay(t, out, 5*time.Second)
			if o.err != nil || o.stats != (Stats{ToBackend: nbytes}) {
				t.Errorf("session: %+v, %v", o.stats, o.err)
			}
			if o.took < nbytes*every {
				t.Errorf("session ended after %v", o.took)
			}
		})
	}
}

// TestRelayReset: the backend resets the connection; the session ends at once
// and closes the client's connection.
func TestRelayReset(t *testing.T) {
	for _, kind := range relayKinds {
		t.Run(kind, func(t *testing.T) {
			noGoroutineLeak(t)
			rt := newRelayTest(t, kind)
			out := rt.start(t.Context(), "", "", time.Minute)
			rt.client.Write([]byte("a1 NOOP\r\n"))
			readExactly(t, rt.backend, "a1 NOOP\r\n")
			rt.backend.(*net.TCPConn).SetLinger(0)
			rt.backend.Close()

			o := waitRelay(t, out, 2*time.Second)
			if !errors.Is(o.err, syscall.ECONNRESET) {
				t.Errorf("session: %v, want a connection reset", o.err)
			}
			expectClosed(t, rt.client)
		})
	}
}

func TestRelayContextCancel(t *testing.T) {
	for _, kind := range relayKinds {
		t.Run(kind, func(t *testing.T) {
			noGoroutineLeak(t)
			rt := newRelayTest(t, kind)
			ctx, cancel := context.WithCancel(t.Context())
			out := rt.start(ctx, "", "", time.Minute)
			rt.client.Write([]byte("a1 IDLE\r\n"))
			readExactly(t, rt.backend, "a1 IDLE\r\n")
			cancel()
			o := waitRelay(t, out, 2*time.Second)
			if !errors.Is(o.err, context.Canceled) {
				t.Errorf("session: %v, want context.Canceled", o.err)
			}
			if o.stats.ToBackend != 9 {
				t.Errorf("stats %+v", o.stats)
			}
			expectClosed(t, rt.client)
			expectClosed(t, rt.backend)
		})
	}
}

// TestRelayGoroutines ends many relays at once in every way and checks that
// none leaves a goroutine behind.
func TestRelayGoroutines(t *testing.T) {
	noGoroutineLeak(t)
	ctx, cancel := context.WithCancel(t.Context())
	var outs []<-chan relayOutcome
	for _, kind := range relayKinds {
		for range 10 {
			idle := newRelayTest(t, kind)
			outs = append(outs, idle.start(t.Context(), "x", "y", 50*time.Millisecond))
			cancelled := newRelayTest(t, kind)
			outs = append(outs, cancelled.start(ctx, "x", "y", time.Minute))
			closed := newRelayTest(t, kind)
			outs = append(outs, closed.start(t.Context(), "x", "y", time.Minute))
			closed.client.Close()
			closed.backend.Close()
		}
	}
	cancel()
	for _, out := range outs {
		waitRelay(t, out, 5*time.Second)
	}
}

// BenchmarkRelay moves 64 MiB per op over loopback TCP: directly from a
// client to a server (the baseline), through Start on the zero-copy path,
// and through Start on the buffered path (wrapped connections, 16 KiB).
func BenchmarkRelay(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		c, s := loopbackTCP(b)
		defer c.Close()
		defer s.Close()
		benchStream(b, c, s)
	})
	for _, bc := range []struct{ name, kind string }{{"splice", "tcp"}, {"buffered", "wrapped"}} {
		b.Run(bc.name, func(b *testing.B) {
			rt := newRelayTest(b, bc.kind)
			out := rt.start(context.Background(), "", "", time.Minute)
			benchStream(b, rt.client, rt.backend)
			rt.client.Close()
			rt.backend.Close()
			if o := waitRelay(b, out, 5*time.Second); o.err != nil {
				b.Logf("session: %v", o.err)
			}
		})
	}
}

// benchStream writes 64 MiB per op to w in 1 MiB writes and reads it from r
// with 256 KiB reads.
func benchStream(b *testing.B, w, r net.Conn) {
	const size = 64 << 20
	block := make([]byte, 1<<20)
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	for b.Loop() {
		done := make(chan error, 1)
		go func() {
			var err error
			for n, got := 0, 0; got < size && err == nil; got += n {
				n, err = r.Read(buf[:min(len(buf), size-got)])
			}
			done <- err
		}()
		for range size / len(block) {
			if _, err := w.Write(block); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// TestRelayIdleCost: an idle relayed session holds its two sockets and
// nothing else, however many bytes it moved before: no goroutine (the
// poller's one is shared), no splice pipe.
func TestRelayIdleCost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parks sessions in epoll; counts descriptors in /proc")
	}
	noGoroutineLeak(t)
	const sessions = 50
	var rts []*relayTest
	for range sessions {
		rts = append(rts, newRelayTest(t, "tcp"))
	}
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	var outs []<-chan relayOutcome
	for _, rt := range rts {
		outs = append(outs, rt.start(t.Context(), "", "", time.Minute))
		go rt.client.Write(bytes.Repeat([]byte("c"), 100<<10))
		readExactly(t, rt.backend, strings.Repeat("c", 100<<10))
		rt.backend.Write([]byte("* OK\r\n"))
		readExactly(t, rt.client, "* OK\r\n")
	}
	// A direction's goroutine ends just after its last write.
	var extraGoroutines int
	for range 200 {
		if extraGoroutines = runtime.NumGoroutine() - goroutines; extraGoroutines <= 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	extraFDs := openFDs(t) - fds
	t.Logf("%d idle sessions: %d descriptors and %d goroutines beyond their sockets", sessions, extraFDs, extraGoroutines)
	// The pool's pipes, two descriptors each, and the epoll set are few
	// whatever the sessions (more pipes under -race, whose sync.Pool
	// drops some on purpose); a pipe held per direction would be four a
	// session.
	if extraFDs >= sessions/2 {
		t.Errorf("%d descriptors beyond the sockets of %d idle sessions, want the pool's few", extraFDs, sessions)
	}
	if extraGoroutines > 1 { // the poller's loop
		t.Errorf("%d goroutines for %d idle sessions, want the poller's one", extraGoroutines, sessions)
	}
	for i, rt := range rts {
		rt.client.Close()
		rt.backend.Close()
		waitRelay(t, outs[i], 5*time.Second)
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// A socket hung up in both directions is reported by epoll before its
// direction is armed (EPOLLHUP cannot be masked): the direction's first
// run, still sending the pending bytes, must stay the only one, or the
// pending bytes go out twice. Here the client has closed and the backend
// has nothing to say, so the client socket hangs up as soon as the relay
// half-closes it, while the pending bytes wait for the backend to read.
func TestRelayHangUpBeforeArmed(t *testing.T) {
	rt := newRelayTest(t, "tcp")
	pending := strings.Repeat("x", 16<<20) // more than the sockets buffer
	rt.client.Close()
	halfClose(rt.backend)
	out := rt.start(t.Context(), pending, "", 0)
	n, err := io.Copy(io.Discard, rt.backend)
	if err != nil || n != int64(len(pending)) {
		t.Errorf("the backend read %d bytes (%v), want the %d pending once", n, err, len(pending))
	}
	if o := waitRelay(t, out, 5*time.Second); o.stats.ToBackend != int64(len(pending)) {
		t.Errorf("ToBackend %d, want %d", o.stats.ToBackend, len(pending))
	}
}
