package mailproxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// slowKind is one way of being slow: connect to a listener, run a short
// exchange at once, then send drip, one piece every interval, forever.
type slowKind struct {
	name     string
	proto    string
	listener string   // "plain", "tls" or "proxy"
	greeted  bool     // the proxy greets first: read the greeting
	steps    []string // pairs: a line to send, the prefix of the reply to await
	drip     [][]byte
	interval time.Duration
}

// bytewise cuts s into its bytes: a drip of one byte at a time.
func bytewise(s []byte) [][]byte {
	var out [][]byte
	for i := range s {
		out = append(out, s[i:i+1])
	}
	return out
}

// slowKinds are the slow clients of TestSlowClients, spread over the
// protocols: silent ones, lines, an IMAP literal and SASL responses
// that never end, a TLS handshake and a PROXY protocol header sent a byte
// a second, and clients that keep sending short commands, each complete
// well within the timeout.
func slowKinds(t *testing.T) []slowKind {
	hello := bytewise(clientHello(t))
	header := bytewise([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 40000 143\r\n"))
	second := time.Second
	var kinds []slowKind
	for _, proto := range hostileProtocols {
		line := map[string]string{"imap": "a LOGIN alice secret", "pop3": "USER alice", "smtp": "EHLO client.example"}[proto]
		noop := map[string]string{"imap": "a NOOP\r\n", "pop3": "NOOP\r\n", "smtp": "NOOP\r\n"}[proto]
		kinds = append(kinds,
			slowKind{name: "silent", proto: proto, listener: "plain", greeted: true},
			slowKind{name: "line", proto: proto, listener: "plain", greeted: true, drip: bytewise([]byte(line)), interval: second},
			slowKind{name: "tls", proto: proto, listener: "tls", drip: hello, interval: second},
			slowKind{name: "proxy", proto: proto, listener: "proxy", drip: header, interval: second},
			slowKind{name: "commands", proto: proto, listener: "plain", greeted: true, drip: [][]byte{[]byte(noop)}, interval: 250 * time.Millisecond},
		)
	}
	kinds = append(kinds,
		slowKind{name: "literal", proto: "imap", listener: "plain", greeted: true, steps: []string{"a LOGIN {100}", "+ "}, drip: bytewise(make([]byte, 100)), interval: second},
		slowKind{name: "sasl", proto: "pop3", listener: "plain", greeted: true, steps: []string{"AUTH PLAIN", "+ "}, drip: bytewise([]byte(testutil.B64("\x00alice\x00secret"))), interval: second},
		slowKind{name: "sasl", proto: "smtp", listener: "plain", greeted: true, steps: []string{"AUTH PLAIN", "334 "}, drip: bytewise([]byte(testutil.B64("\x00alice\x00secret"))), interval: second},
	)
	return kinds
}

// clientHello returns the first flight of a TLS client: its ClientHello
// record.
func clientHello(t *testing.T) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		tls.Client(c, &tls.Config{ServerName: "mail.example", InsecureSkipVerify: true}).Handshake()
		c.Close()
	}()
	buf := make([]byte, 64<<10)
	n, err := s.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// slowResult is how long the proxy kept a slow client.
type slowResult struct {
	kind string
	held time.Duration
	err  error
}

// slowOpen counts the slow clients connected, and slowPeak the most at
// once.
var slowOpen, slowPeak atomic.Int64

// runSlow connects as k and returns, once the proxy has closed the
// connection (or after limit), how long after the connection was made.
func runSlow(addr string, k slowKind, limit time.Duration) slowResult {
	res := slowResult{kind: k.proto + "/" + k.name}
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		res.err = err
		return res
	}
	defer conn.Close()
	n := slowOpen.Add(1)
	defer slowOpen.Add(-1)
	for peak := slowPeak.Load(); n > peak; peak = slowPeak.Load() {
		if slowPeak.CompareAndSwap(peak, n) {
			break
		}
	}
	start := time.Now()
	conn.SetDeadline(start.Add(limit))
	r := bufio.NewReader(conn)
	if k.greeted {
		if _, err := r.ReadString('\n'); err != nil {
			res.err = fmt.Errorf("greeting: %w", err)
			return res
		}
	}
	for i := 0; i+1 < len(k.steps); i += 2 {
		fmt.Fprintf(conn, "%s\r\n", k.steps[i])
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, k.steps[i+1]) {
			res.err = fmt.Errorf("%s: got %q, %v", k.steps[i], l, err)
			return res
		}
	}
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		closed <- err
	}()
	var tick <-chan time.Time
	if len(k.drip) > 0 {
		ticker := time.NewTicker(k.interval)
		defer ticker.Stop()
		tick = ticker.C
		conn.Write(k.drip[0])
	}
	for i := 1; ; i++ {
		select {
		case err := <-closed:
			res.held = time.Since(start)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				res.err = fmt.Errorf("still open after %v", limit)
			}
			return res
		case <-tick:
			conn.Write(k.drip[i%len(k.drip)])
		}
	}
}

// A flood of slow clients, spread over IMAP, POP3 and SMTP and over every
// way of being slow: each is closed when the timeout runs out, counted
// from its connection (from the greeting: the dialogue before the login
// has timeout in all, as nginx's), whatever it sends meanwhile; and
// logins go on meanwhile at their usual latency.
func TestSlowClients(t *testing.T) {
	// The proxy never closes before the timeout; it closes at once when
	// it runs out, but the clients share two cores with the proxy (and a
	// CI machine with other jobs): late allows for a machine stalled by
	// others. A proxy that gave a trickling client more time at each byte
	// would never close it.
	const timeout = 2 * time.Second
	const early, late = 250 * time.Millisecond, 2 * time.Second
	n := hostileSize(2000, 150)
	slowPeak.Store(0)
	hp := startHostileProxy(t, session.Config{Timeout: timeout})
	kinds := slowKinds(t)

	base := measureLogins(t, hp, hostileSize(600, 150), nil)
	results := make(chan slowResult, n)
	done := make(chan struct{})
	var during []time.Duration
	var logins sync.WaitGroup
	logins.Go(func() { during = measureLogins(t, hp, 0, done) })
	var slow sync.WaitGroup
	// Two thousand new slow clients a second: the full 2000 are at once
	// in the proxy for a moment, and their connections do not all come
	// in one burst.
	ramp := time.NewTicker(500 * time.Microsecond)
	for i := range n {
		<-ramp.C
		k := kinds[i%len(kinds)]
		slow.Go(func() { results <- runSlow(hp.addrs[k.proto][k.listener], k, timeout+10*time.Second) })
	}
	ramp.Stop()
	slow.Wait()
	close(done)
	logins.Wait()
	close(results)

	held := map[string][]time.Duration{}
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.kind, r.err)
			continue
		}
		held[r.kind] = append(held[r.kind], r.held)
	}
	for _, kind := range slices.Sorted(maps.Keys(held)) {
		d := held[kind]
		slices.Sort(d)
		first, last := d[0], d[len(d)-1]
		p50, p99 := percentiles(d)
		t.Logf("%-14s %4d clients held %v to %v (p50 %v, p99 %v)", kind, len(d), first.Round(time.Millisecond), last.Round(time.Millisecond), p50.Round(time.Millisecond), p99.Round(time.Millisecond))
		if first < timeout-early || last > timeout+late {
			t.Errorf("%s: held %v to %v, want %v (-%v +%v)", kind, first, last, timeout, early, late)
		}
	}
	testutil.WaitFor(t, "every slow client counted", func() bool { return hp.sessions.open.Load() == 0 })
	if got := hp.sessions.endedBy(session.LimitTimeout); got != n {
		t.Errorf("%d sessions ended by the timeout, want %d: %v", got, n, hp.sessions)
	}
	p50b, p99b := percentiles(base)
	p50, p99 := percentiles(during)
	t.Logf("logins alone: %d, p50 %v, p99 %v", len(base), p50b, p99b)
	t.Logf("logins among %d slow clients (%d at once at most): %d, p50 %v, p99 %v", n, slowPeak.Load(), len(during), p50, p99)
	if len(during) == 0 {
		t.Fatal("no login during the flood")
	}
	if p50 > 10*p50b+50*time.Millisecond || p99 > timeout/2 {
		t.Errorf("logins slowed down by the slow clients: p50 %v (alone %v), p99 %v", p50, p50b, p99)
	}
}

// percentiles returns the median and the 99th percentile of d.
func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Sorted(slices.Values(d))
	return s[len(s)/2].Round(10 * time.Microsecond), s[(len(s)*99)/100].Round(10 * time.Microsecond)
}

// measureLogins logs in over IMAP, POP3 and SMTP in turn, n times or,
// with n zero, until done closes, one login every loginPace, and returns
// how long each took from the connection to the backend's answer to the
// login.
func measureLogins(t *testing.T, hp *hostileProxy, n int, done <-chan struct{}) []time.Duration {
	var took []time.Duration
	pace := time.NewTicker(loginPace)
	defer pace.Stop()
	for i := 0; n == 0 || i < n; i++ {
		select {
		case <-done:
			return took
		case <-pace.C:
		}
		proto := hostileProtocols[i%len(hostileProtocols)]
		d, err := loginOnce(hp.addrs[proto]["plain"], proto)
		if err != nil {
			t.Errorf("%s login: %v", proto, err)
			return took
		}
		took = append(took, d)
	}
	return took
}

// loginPace spaces the logins of measureLogins: a steady load, far from
// what the proxy can serve, whose latency is the usual one.
const loginPace = 5 * time.Millisecond

// loginScripts are a login in each protocol: lines to send and the
// prefix of the last reply line to await for each.
var loginScripts = map[string][]string{
	"imap": {"", "* OK", "a LOGIN alice secret", "a OK", "b LOGOUT", "b OK"},
	"pop3": {"", "+OK", "USER alice", "+OK", "PASS secret", "+OK", "QUIT", "+OK"},
	"smtp": {"", "220 ", "EHLO client.example", "250 ", "AUTH PLAIN " + testutil.B64("\x00alice\x00secret"), "235 ", "QUIT", "221 "},
}

// loginOnce logs in as alice and returns how long it took until the
// login's answer.
func loginOnce(addr, proto string) (time.Duration, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(start.Add(10 * time.Second))
	r := bufio.NewReader(conn)
	script := loginScripts[proto]
	var took time.Duration
	for i := 0; i < len(script); i += 2 {
		if script[i] != "" {
			fmt.Fprintf(conn, "%s\r\n", script[i])
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return 0, fmt.Errorf("after %q: %w", script[i], err)
			}
			if strings.HasPrefix(l, script[i+1]) {
				break
			}
			if !strings.HasPrefix(l, "*") && !strings.HasPrefix(l, script[i+1][:3]) {
				return 0, fmt.Errorf("after %q: %q", script[i], l)
			}
		}
		if i == len(script)-4 {
			took = time.Since(start)
		}
	}
	return took, nil
}
