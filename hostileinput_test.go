package mailproxy_test

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// pipelined returns n commands in one piece, each made by cmd from its
// number.
func pipelined(n int, cmd func(i int) string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(cmd(i))
		b.WriteString("\r\n")
	}
	return b.String()
}

// answers returns the replies to expect for n pipelined commands, each
// made by reply from its number.
func answers(n int, reply func(i int) string) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = reply(i)
	}
	return out
}

// Input no client would send: literals announced as gigabytes, SASL
// responses of megabytes, commands beyond the client buffer, and 10 000
// commands in one write. Each is refused in the protocol's words, and
// the session ends where nginx ends it (a command beyond the client
// buffer) or goes on (a synchronising literal refused before it was
// sent); pipelined commands are answered in order until max_commands.
//
// Where the client sends far more than the proxy reads before it closes
// (megabytes, or pipelined commands past max_commands), the close meets
// unread input and the kernel resets the connection, which may destroy
// the last replies before the client reads them: there the replies read
// must be the first ones expected, in order, and the proxy's log must
// say why it closed.
func TestHostileInput(t *testing.T) {
	const timeout = 5 * time.Second
	huge := strings.Repeat("QUFB", 2<<20) // a SASL response of 8 MiB
	var logs testutil.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	fixtures := map[string]*hostileProxy{
		"default":   startHostileProxy(t, session.Config{Timeout: timeout, Logger: log}),
		"unlimited": startHostileProxy(t, session.Config{Timeout: timeout, Logger: log, MaxCommands: -1}),
	}
	const n = 10000
	limit := session.DefaultMaxCommands
	imapNoops := func(n int) string { return pipelined(n, func(i int) string { return fmt.Sprintf("a%d NOOP", i) }) }
	imapOKs := func(n int) []string { return answers(n, func(i int) string { return fmt.Sprintf("a%d OK", i) }) }
	const tooLong, tooMany = "client sent too long command", "client sent too many commands"
	tests := []struct {
		name    string
		proto   string
		fixture string
		send    []string // pieces written one after the other
		want    []string // the replies' first lines, in order, after the greeting
		closed  bool     // the proxy then closes the session
		// reset, when set, is what the proxy logs as it closes a session
		// whose client sent far more than it read: the replies may stop
		// short with a reset.
		reset string
	}{
		{"imap LOGIN 1 GiB literal", "imap", "default",
			[]string{"a LOGIN {1073741824}\r\n", "b NOOP\r\n"}, []string{"a BAD literal too big", "b OK"}, false, ""},
		{"imap LOGIN 1 GiB literal+", "imap", "default",
			[]string{"a LOGIN alice {1073741824+}\r\n", "secret"}, []string{"* BYE literal too big"}, true, ""},
		{"imap AUTHENTICATE 1 GiB literal", "imap", "default",
			[]string{"a AUTHENTICATE PLAIN {1073741824}\r\n", "b NOOP\r\n"}, []string{"a BAD literal too big", "b OK"}, false, ""},
		{"imap literals beyond the buffer", "imap", "default",
			[]string{"a LOGIN {4000}\r\n", strings.Repeat("x", 4000) + " {4000}\r\n", "b NOOP\r\n"}, []string{"+ OK", "a BAD literal too big", "b OK"}, false, ""},
		{"imap line after a literal beyond the buffer", "imap", "default",
			[]string{"a LOGIN {4000}\r\n", strings.Repeat("x", 4000) + " " + strings.Repeat("y", 200) + "\r\n"}, []string{"+ OK", "* BYE line too long"}, true, ""},
		{"imap 8 MiB command", "imap", "default",
			[]string{"a LOGIN alice " + huge + "\r\n"}, []string{"* BYE line too long"}, true, tooLong},
		{"imap AUTHENTICATE 8 MiB response", "imap", "default",
			[]string{"a AUTHENTICATE PLAIN\r\n", huge + "\r\n"}, []string{"+ ", "* BYE line too long"}, true, tooLong},
		{"pop3 AUTH 8 MiB response", "pop3", "default",
			[]string{"AUTH PLAIN\r\n", huge + "\r\n"}, []string{"+ ", "-ERR line too long"}, true, tooLong},
		{"pop3 AUTH 8 MiB initial response", "pop3", "default",
			[]string{"AUTH PLAIN " + huge + "\r\n"}, []string{"-ERR line too long"}, true, tooLong},
		{"smtp AUTH 8 MiB initial response", "smtp", "default",
			[]string{"EHLO client.example\r\nAUTH PLAIN " + huge + "\r\n"}, []string{"250-", "500 5.5.6 Line too long"}, true, tooLong},
		{"smtp AUTH 8 MiB response", "smtp", "default",
			[]string{"AUTH PLAIN\r\n", huge + "\r\n"}, []string{"334 ", "500 5.5.6 Line too long"}, true, tooLong},
		{"imap 1500 pipelined", "imap", "default",
			[]string{imapNoops(1500)}, append(imapOKs(limit), "* BYE too many commands"), true, ""},
		{"imap 10000 pipelined", "imap", "default",
			[]string{imapNoops(n)}, append(imapOKs(limit), "* BYE too many commands"), true, tooMany},
		{"pop3 10000 pipelined", "pop3", "default",
			[]string{pipelined(n, func(int) string { return "NOOP" })},
			append(answers(limit, func(int) string { return "+OK" }), "-ERR too many commands"), true, ""},
		{"smtp 10000 pipelined", "smtp", "default",
			[]string{pipelined(n, func(int) string { return "NOOP" })},
			append(answers(limit, func(int) string { return "250 " }), "421 4.7.0 Too many commands"), true, ""},
		{"imap 10000 pipelined, no max_commands", "imap", "unlimited",
			[]string{imapNoops(n) + "b LOGIN alice secret\r\n"}, append(imapOKs(n), "b OK"), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logged := strings.Count(logs.String(), tt.reset)
			conn, err := net.Dial("tcp", fixtures[tt.fixture].addrs[tt.proto]["plain"])
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(timeout))
			r := bufio.NewReader(conn)
			r.ReadString('\n') // the greeting
			// The client writes without waiting for the replies, as a
			// hostile one would: a write the proxy stops reading fails
			// once it closes.
			go func() {
				for _, s := range tt.send {
					if _, err := io.WriteString(conn, s); err != nil {
						return
					}
				}
			}()
			for i, want := range tt.want {
				line, err := nextReply(r, tt.proto)
				if err != nil && tt.reset != "" && errors.Is(err, syscall.ECONNRESET) {
					t.Logf("reset after %d replies of %d", i, len(tt.want))
					testutil.WaitFor(t, "the proxy's log: "+tt.reset, func() bool { return strings.Count(logs.String(), tt.reset) > logged })
					return
				}
				if err != nil {
					t.Fatalf("reply %d: %v, want %q", i, err, want)
				}
				if !strings.HasPrefix(line, want) {
					t.Fatalf("reply %d: %q, want %q", i, line, want)
				}
			}
			if got := closesSoon(conn, r); got != tt.closed {
				t.Errorf("closed: %v, want %v", got, tt.closed)
			}
		})
	}
}

// nextReply reads the first line of the next reply in proto: IMAP's
// untagged data (but BYE) is skipped, and the further lines of a
// multi-line SMTP reply are read past.
func nextReply(r *bufio.Reader, proto string) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return line, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case proto == "imap" && strings.HasPrefix(line, "* ") && !strings.HasPrefix(line, "* BYE"):
			continue
		case proto == "smtp":
			for last := line; len(last) > 3 && last[3] == '-'; {
				if last, err = r.ReadString('\n'); err != nil {
					return line, err
				}
			}
		}
		return line, nil
	}
}

// closesSoon reports whether the proxy closes the connection within half
// a second, rather than leaving it open and saying nothing more.
func closesSoon(conn net.Conn, r *bufio.Reader) bool {
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err := r.ReadByte()
	ne, ok := err.(net.Error)
	return err != nil && !(ok && ne.Timeout())
}

// A hostile state a session is held in: a client that reached it and
// stopped there.
type heldState struct {
	name     string
	proto    string
	listener string
	// reach takes a new connection to the state.
	reach func(conn net.Conn, r *bufio.Reader) error
	// bound is what a session in the state may cost; zero means
	// perSession.
	bound int64
}

// perSession is what a session may cost in any state but a TLS handshake
// under way: its buffers are the client buffer and the reply buffer, and
// nothing a client sends or announces makes them grow.
const perSession = 64 << 10

// perHandshake is what a session may cost while crypto/tls reads a
// ClientHello: the record being read (up to 16 KiB) and the handshake
// message put together from records (up to 64 KiB in Go; OpenSSL, and so
// nginx, takes a ClientHello of 128 KiB). It is bytes the client sent,
// never what it announced, and the timeout ends the handshake.
const perHandshake = 160 << 10

// sendAwait writes s and reads one reply line, which must start with
// want.
func sendAwait(conn net.Conn, r *bufio.Reader, s, want string) error {
	if _, err := io.WriteString(conn, s); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, want) {
		return fmt.Errorf("after %.40q: %q, %v, want %q", s, line, err, want)
	}
	return nil
}

// heldStates are the states of TestHostileMemory.
func heldStates(t *testing.T) []heldState {
	hello := clientHello(t)
	greeted := func(then func(conn net.Conn, r *bufio.Reader) error) func(net.Conn, *bufio.Reader) error {
		return func(conn net.Conn, r *bufio.Reader) error {
			if _, err := r.ReadString('\n'); err != nil {
				return err
			}
			return then(conn, r)
		}
	}
	write := func(s string) func(net.Conn, *bufio.Reader) error {
		return func(conn net.Conn, _ *bufio.Reader) error {
			_, err := io.WriteString(conn, s)
			return err
		}
	}
	return []heldState{
		{"idle", "imap", "plain", greeted(write("")), 0},
		{"line of 4000 bytes", "imap", "plain", greeted(write("a LOGIN " + strings.Repeat("x", 3992))), 0},
		{"literal of 4000 bytes", "imap", "plain", greeted(func(conn net.Conn, r *bufio.Reader) error {
			if err := sendAwait(conn, r, "a LOGIN {4000}\r\n", "+ OK"); err != nil {
				return err
			}
			_, err := io.WriteString(conn, strings.Repeat("x", 3999))
			return err
		}), 0},
		{"literals of 2000 bytes, as many as taken", "imap", "plain", greeted(func(conn net.Conn, r *bufio.Reader) error {
			// Literal after literal in one command, up to the 63rd,
			// which is announced but not sent; or until one is refused.
			io.WriteString(conn, "a ID (")
			for range 63 {
				if _, err := io.WriteString(conn, `"k" {2000}`+"\r\n"); err != nil {
					return err
				}
				line, err := r.ReadString('\n')
				switch {
				case err != nil:
					return err
				case strings.HasPrefix(line, "a BAD"):
					return nil
				case !strings.HasPrefix(line, "+ OK"):
					return fmt.Errorf("literal: %q", line)
				}
				if _, err := io.WriteString(conn, strings.Repeat("v", 2000)+" "); err != nil {
					return err
				}
			}
			return nil
		}), 0},
		{"SASL response of 4000 bytes", "pop3", "plain", greeted(func(conn net.Conn, r *bufio.Reader) error {
			if err := sendAwait(conn, r, "AUTH PLAIN\r\n", "+ "); err != nil {
				return err
			}
			_, err := io.WriteString(conn, strings.Repeat("QUFB", 1000))
			return err
		}), 0},
		// The client's send buffer takes what the proxy does not read.
		{"10000 pipelined, replies unread", "smtp", "tight", greeted(write(pipelined(10000, func(int) string { return "NOOP" }))), 0},
		{"TLS handshake begun", "imap", "tls", write(string(hello[:len(hello)/2])), perHandshake},
		{"TLS record of 16 KiB announced", "pop3", "tls", write(tlsRecords(16<<10, 4000)), perHandshake},
		{"TLS ClientHello of 60 KiB, 48 KiB sent", "smtp", "tls", write(tlsRecords(60<<10, 48<<10)), perHandshake},
		// A version 1 header not sent at once is refused at once.
		{"PROXY header (v2) begun", "smtp", "proxy", write("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00"), 0},
	}
}

// Sessions held in hostile states, many at once: what each costs the
// proxy (heap and goroutine stacks, beyond what the process held before;
// the test's own end of a connection is a few hundred bytes of it) stays
// within a bound, whatever the client announced or sent.
func TestHostileMemory(t *testing.T) {
	n := hostileSize(2000, 100)
	// A long timeout: the sessions stay while they are measured.
	hp := startHostileProxy(t, session.Config{Timeout: time.Minute})
	for _, st := range heldStates(t) {
		t.Run(st.name, func(t *testing.T) {
			// The sessions of the state before are gone.
			testutil.WaitFor(t, "the sessions before to end", func() bool { return hp.sessions.open.Load() == 0 })
			before := settledLiveBytes()
			conns := make([]net.Conn, 0, n)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for range n {
				conn, err := dialSmall(hp.addrs[st.proto][st.listener])
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, conn)
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				if err := st.reach(conn, bufio.NewReaderSize(conn, 16)); err != nil {
					t.Fatalf("session %d: %v", len(conns), err)
				}
			}
			testutil.WaitFor(t, "every session started", func() bool { return hp.sessions.open.Load() == int64(n) })
			after := settledLiveBytes()
			each := (after - before) / int64(n)
			t.Logf("%d sessions: %d bytes each (heap and stacks)", n, each)
			bound := cmp.Or(st.bound, perSession)
			if each > bound {
				t.Errorf("%d bytes a session, want at most %d", each, bound)
			}
		})
	}
}

// dialSmall connects with a receive buffer of 4 KiB: a client that does
// not read its replies fills it quickly.
func dialSmall(addr string) (net.Conn, error) { return dialBuffers(addr, 4096, 0) }

// dialBuffers connects with the socket buffers given (SO_RCVBUF,
// SO_SNDBUF); zero leaves the system's.
func dialBuffers(addr string, rcv, snd int) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) {
			for opt, size := range map[int]int{syscall.SO_RCVBUF: rcv, syscall.SO_SNDBUF: snd} {
				if size > 0 {
					err = errors.Join(err, syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, size))
				}
			}
		})
		return err
	}}
	return d.Dial("tcp", addr)
}

// liveBytes returns the heap in use and the goroutine stacks, after a
// collection. The second collection empties the sync.Pools, whose
// buffers the sessions measured would otherwise take for free.
func liveBytes() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}

// settledLiveBytes returns liveBytes once it stops changing: sessions
// that just ended may still be returning, and sessions just started may
// still be reading what their clients sent last.
func settledLiveBytes() int64 {
	last := liveBytes()
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		now := liveBytes()
		if d := now - last; d < last/200 && -d < last/200 {
			return now
		}
		last = now
	}
	return last
}

// tlsRecords returns the start of a ClientHello of size bytes, split in
// TLS records of 16 KiB, up to sent bytes of it.
func tlsRecords(size, sent int) string {
	msg := append([]byte{1, byte(size >> 16), byte(size >> 8), byte(size)}, make([]byte, size)...)
	var b strings.Builder
	for len(msg) > 0 && sent > 0 {
		n := min(len(msg), 16<<10, sent)
		b.Write([]byte{0x16, 3, 1, byte(n >> 8), byte(n)})
		b.Write(msg[:n])
		msg, sent = msg[n:], sent-n
	}
	return b.String()
}

// A client that pipelines commands and never reads the replies: once the
// socket buffers are full the proxy's writes block, and the timeout ends
// the session, counted as the timeout's; the proxy buffers no more than
// its reply buffer meanwhile (see TestHostileMemory). The client's own
// write blocks too, until the proxy closes.
func TestUnreadReplies(t *testing.T) {
	const timeout = 2 * time.Second
	const early, late = 250 * time.Millisecond, 2 * time.Second
	hp := startHostileProxy(t, session.Config{Timeout: timeout, MaxCommands: -1})
	noops := map[string]string{"imap": "a NOOP", "pop3": "NOOP", "smtp": "NOOP"}
	ended := make(chan time.Duration, len(hostileProtocols))
	for _, proto := range hostileProtocols {
		// Its writes block once the buffers are full.
		conn, err := dialBuffers(hp.addrs[proto]["tight"], 4096, 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(timeout + 10*time.Second))
		go func() {
			start := time.Now()
			_, err := io.WriteString(conn, pipelined(100000, func(int) string { return noops[proto] }))
			if err == nil || os.IsTimeout(err) {
				t.Errorf("%s: the write ended with %v, want the proxy's close", proto, err)
			}
			took := time.Since(start)
			t.Logf("%s: ended after %v", proto, took.Round(time.Millisecond))
			ended <- took
		}()
	}
	for range hostileProtocols {
		if took := <-ended; took < timeout-early || took > timeout+late {
			t.Errorf("ended after %v, want %v (-%v +%v)", took, timeout, early, late)
		}
	}
	testutil.WaitFor(t, "the sessions counted", func() bool { return hp.sessions.open.Load() == 0 })
	if got := hp.sessions.endedBy(session.LimitTimeout); got != len(hostileProtocols) {
		t.Errorf("%d sessions ended by the timeout, want %d: %v", got, len(hostileProtocols), hp.sessions)
	}
}
