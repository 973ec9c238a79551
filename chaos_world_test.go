package mailproxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
)

// chaos is the world of a chaos test: the backends, the faults, the auth
// services, the name servers, and the proxy's process.
type chaos struct {
	t    *testing.T
	size chaosSize
	dir  string
	seed uint64

	backends [3]string // the mailtest servers' addresses
	// routes[proto][kind] is where the auth service sends a backend kind.
	routes  [3]map[string]string
	auths   []*chaosAuth // one per configuration loaded
	running *chaosAuth   // the running configuration's
	dns     string       // a name server that answers
	silent  string       // a name server that never answers
	busy    string       // an address taken, for the broken configuration
	listens [3]string    // the proxy's addresses
	proxy   *chaosProxy

	mu sync.Mutex
	// delivered counts the messages the SMTP backend took, by Message-ID.
	delivered map[string]int
	// asked is how often, and when last, the auth services were asked
	// about each user.
	asked map[string]asked
}

// asked is how often, and when last, the auth services were asked about
// a user.
type asked struct {
	times int
	last  time.Time
}

// startChaos starts everything but the load: backends, faults, name
// servers, the first auth service and the proxy's process. The leak checks
// of the test process run when the test ends, after everything else has
// closed.
func startChaos(t *testing.T, size chaosSize) *chaos {
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close() // the network poller is open before the count
	}
	fdsBefore := descriptors()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(ignore); err != nil {
			t.Errorf("goroutines left in the test process: %v", err)
		}
		if left := newDescriptors(fdsBefore, descriptors()); len(left) > 0 {
			t.Errorf("descriptors left in the test process: %v", left)
		}
	})
	h := &chaos{t: t, size: size, dir: t.TempDir(), seed: rand.Uint64(),
		delivered: map[string]int{}, asked: map[string]asked{}}
	t.Logf("seed %d", h.seed)
	h.startBackends()
	h.startFaults()
	h.dns = testutil.StartDNS(t, chaosDNSRecords()...)
	h.silent = h.startSilentDNS()
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	h.busy = busy.Addr().String()
	for i := range h.listens {
		h.listens[i] = testutil.FreeAddr(t)
	}
	h.running = h.startAuth()
	h.auths = append(h.auths, h.running)
	h.proxy = startChaosProxy(t, h.writeConfig(0, h.running, false))
	return h
}

// chaosSources are the client addresses of the load: the proxy sees
// several clients, and the name server knows each.
var chaosSources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}

// chaosLoopSource is the address of the client loop of TestChaosReload.
const chaosLoopSource = "127.0.0.6"

// chaosDNSRecords are the name server's records: a confirmed name for
// each client address.
func chaosDNSRecords() []string {
	var records []string
	for _, ip := range append(slices.Clone(chaosSources), chaosLoopSource) {
		last := ip[strings.LastIndex(ip, ".")+1:]
		records = append(records,
			last+".0.0.127.in-addr.arpa. 60 IN PTR c"+last+".chaos.test.",
			"c"+last+".chaos.test. 60 IN A "+ip)
	}
	return records
}

// startSilentDNS returns the address of a name server that reads every
// query and answers none: a resolver waits its resolver_timeout.
func (h *chaos) startSilentDNS() string {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	h.t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}

// chaosPassword is the password of every backend user.
const chaosPassword = "pw"

// startBackends starts the mailtest servers, with a user for each session
// (a POP3 maildrop is locked by its session), and an SMTP backend that
// counts what it delivers by Message-ID.
func (h *chaos) startBackends() {
	users := make([]mailtest.User, h.size.sessions+3) // the load's, chaosLoop's two, and TestChaosReload's last
	for i := range users {
		users[i] = mailtest.User{Name: "b" + strconv.Itoa(i), Password: chaosPassword}
	}
	quiet := slog.New(slog.DiscardHandler)
	im, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: quiet})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { im.Close() })
	pop, err := mailtest.StartPOP3(mailtest.POP3Options{Users: users, Logger: quiet})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { pop.Close() })
	sm, err := mailtest.StartSMTP(mailtest.SMTPOptions{Users: users, Logger: quiet, Deliver: func(m mailtest.Message) error {
		id := messageID(m.Data)
		h.mu.Lock()
		h.delivered[id]++
		h.mu.Unlock()
		return nil
	}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { sm.Close() })
	h.backends = [3]string{im.Addr, pop.Addr, sm.Addr}
}

// messageID returns the Message-ID of a message, or "".
func messageID(data []byte) string {
	for line := range strings.SplitSeq(string(data), "\r\n") {
		if id, ok := strings.CutPrefix(line, "Message-ID: "); ok {
			return id
		}
		if line == "" {
			break
		}
	}
	return ""
}

// startFaults starts what the auth service sends failing sessions to: a
// port that refuses, a backend that hangs, and for each protocol
// forwarders to its mailtest server that reset the connection at the
// points the backend kinds name.
func (h *chaos) startFaults() {
	refused := testutil.RefusedAddr(h.t)
	hang := h.startFault(func(_ *faultServer, c net.Conn) { io.Copy(io.Discard, c) })
	for proto := range h.routes {
		routes := map[string]string{
			backendOK: h.backends[proto], backendDeny: h.backends[proto],
			backendRefuse: refused, backendHang: hang,
		}
		cuts := map[string]cutPoint{backendReset: {upstream: ""}}
		switch proto {
		case chaosIMAP:
			cuts[backendCut] = cutPoint{upstream: "c1 SELECT"}
		case chaosPOP3:
			cuts[backendCut] = cutPoint{upstream: "STAT\r\n"}
		case chaosSMTP:
			cuts[backendCut] = cutPoint{upstream: "MAIL FROM:"}
			cuts[backendCutData] = cutPoint{upstream: "\r\n.\r\n"}
			cuts[backendCutAfter] = cutPoint{upstream: "\r\n.\r\n", after: "250 "}
		}
		for kind, cut := range cuts {
			target := h.backends[proto]
			routes[kind] = h.startFault(func(fs *faultServer, c net.Conn) { forward(fs, c, target, cut) })
		}
		h.routes[proto] = routes
	}
}

// faultServer accepts connections on 127.0.0.1 and serves each in a
// goroutine; Close closes the listener and every connection and waits for
// the goroutines.
type faultServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

func (h *chaos) startFault(serve func(*faultServer, net.Conn)) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	fs := &faultServer{ln: ln, conns: map[net.Conn]struct{}{}}
	fs.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !fs.track(c) {
				return
			}
			fs.wg.Go(func() {
				defer fs.untrack(c)
				serve(fs, c)
			})
		}
	})
	h.t.Cleanup(fs.close)
	return ln.Addr().String()
}

// track adds c to the connections Close closes; it reports false, and
// closes c, once Close has run.
func (fs *faultServer) track(c net.Conn) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.done {
		c.Close()
		return false
	}
	fs.conns[c] = struct{}{}
	return true
}

func (fs *faultServer) untrack(c net.Conn) {
	c.Close()
	fs.mu.Lock()
	delete(fs.conns, c)
	fs.mu.Unlock()
}

func (fs *faultServer) close() {
	fs.ln.Close()
	fs.mu.Lock()
	fs.done = true
	for c := range fs.conns {
		c.Close()
	}
	fs.mu.Unlock()
	fs.wg.Wait()
}

// cutPoint is where a forwarder resets both of its connections: when the
// proxy sends upstream ("" for its first byte), or with after set, once
// the backend's next reply containing after has been passed on.
type cutPoint struct {
	upstream, after string
}

// forward relays between the proxy's connection c, accepted by fs, and
// the backend at target, and resets both connections at cut.
func forward(fs *faultServer, c net.Conn, target string, cut cutPoint) {
	b, err := net.Dial("tcp4", target)
	if err != nil || !fs.track(b) {
		return
	}
	defer fs.untrack(b)
	var once sync.Once
	resetBoth := func() { once.Do(func() { reset(c); reset(b) }) }
	var upstreamSeen atomic.Bool
	down := make(chan struct{})
	go func() {
		defer close(down)
		buf := make([]byte, 32<<10)
		for {
			n, err := b.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				if _, werr := c.Write(chunk); werr != nil {
					break
				}
				if cut.after != "" && upstreamSeen.Load() && bytes.Contains(chunk, []byte(cut.after)) {
					resetBoth()
					return
				}
			}
			if err != nil {
				break
			}
		}
		c.Close()
		b.Close()
	}()
	var seen []byte // the end of what went up, for a marker split across reads
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, []byte(cut.upstream)) {
				if cut.after == "" {
					resetBoth()
					break
				}
				upstreamSeen.Store(true)
			}
			seen = seen[max(0, len(seen)-len(cut.upstream)):]
			if _, werr := b.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	b.Close()
	c.Close()
	<-down
}

// reset closes c with a TCP reset.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// chaosAuth is an auth_http service that acts as each user name says,
// and counts the connections open to it.
type chaosAuth struct {
	*httptest.Server
	conns testutil.ConnCounter
}

func (h *chaos) startAuth() *chaosAuth {
	a := &chaosAuth{}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(h.authorize))
	a.conns.Track(a.Server)
	a.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	a.Start()
	h.t.Cleanup(a.Close)
	return a
}

// openConns counts the connections open to the service.
func (a *chaosAuth) openConns() int { return a.conns.Open() }

// authorize answers an auth_http request as the user name says.
func (h *chaos) authorize(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	a := h.asked[r.Header.Get("Auth-User")]
	h.asked[r.Header.Get("Auth-User")] = asked{a.times + 1, time.Now()}
	h.mu.Unlock()
	s, ok := parseChaosUser(r.Header.Get("Auth-User"))
	if !ok {
		w.Header().Set("Auth-Status", "Unknown user")
		return
	}
	switch s.auth {
	case authRefuse:
		w.Header().Set("Auth-Status", "Invalid login or password")
		return
	case authError:
		w.WriteHeader(http.StatusInternalServerError)
		return
	case authClose:
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
		return
	case authStall:
		select {
		case <-r.Context().Done(): // the proxy gave up
		case <-time.After(time.Minute):
		}
		return
	case authSlow:
		select {
		case <-r.Context().Done():
			return
		case <-time.After(s.delay(h.size.slow)):
		}
	}
	proto := slices.Index(chaosProtocols[:], r.Header.Get("Auth-Protocol"))
	if proto < 0 {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	host, port, _ := net.SplitHostPort(h.routes[proto][s.backend])
	password := chaosPassword
	if s.backend == backendDeny {
		password = "wrong"
	}
	w.Header().Set("Auth-Status", "OK")
	w.Header().Set("Auth-Server", host)
	w.Header().Set("Auth-Port", port)
	w.Header().Set("Auth-User", "b"+strconv.Itoa(s.id))
	w.Header().Set("Auth-Pass", password)
}

// writeConfig writes the configuration of generation gen and returns its
// path: the auth service a, a timeout and auth_http_timeout that
// grow with each generation (up to two steps), a resolver that answers,
// one that never does (with a short resolver_timeout), or none, in turn.
// A broken configuration also listens on an address in use: it loads,
// and Proxy.Reload fails.
func (h *chaos) writeConfig(gen int, a *chaosAuth, broken bool) string {
	steps := time.Duration(gen % 3)
	var resolver string
	switch gen % 3 {
	case 0:
		resolver = fmt.Sprintf("resolver %s; resolver_timeout 5s;", h.dns)
	case 1:
		resolver = fmt.Sprintf("resolver %s valid=1s; resolver_timeout 100ms;", h.silent)
	}
	extra := ""
	if broken {
		extra = fmt.Sprintf("server { listen %s; protocol imap; }", h.busy)
	}
	conf := fmt.Sprintf(`
error_log stderr error;
mail {
    server_name      chaos.test;
    auth_http        %s/auth;
    auth_http_timeout %dms;
    timeout          %dms;
    proxy_timeout    5m;
    proxy_smtp_auth  on;
    smtp_auth        plain login;
    %s
    server { listen %s; protocol imap; }
    server { listen %s; protocol pop3; }
    server { listen %s; protocol smtp; }
    %s
}
`, a.URL, (h.size.authTimeout + steps*h.size.step).Milliseconds(),
		(h.size.timeout + steps*h.size.step).Milliseconds(), resolver,
		h.listens[chaosIMAP], h.listens[chaosPOP3], h.listens[chaosSMTP], extra)
	path := filepath.Join(h.dir, fmt.Sprintf("mail-%d.conf", gen))
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// chaosProxy is the proxy's process (chaosChild).
type chaosProxy struct {
	cmd    *exec.Cmd
	in     *json.Encoder
	out    *json.Decoder
	stdin  io.Closer
	logs   *testutil.Buffer
	exited chan struct{} // closed when the process has exited, with err
	err    error
	addrs  []string
	// started is the answer to start: the goroutines and descriptors of
	// a proxy that has served nothing yet.
	started chaosReply
}

// startChaosProxy starts the proxy's process on the configuration at
// path. It must have stopped (stop) by the end of the test: else it is
// killed and the test fails.
func startChaosProxy(t *testing.T, path string) *chaosProxy {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), chaosChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &chaosProxy{cmd: cmd, in: json.NewEncoder(stdin), out: json.NewDecoder(stdout), stdin: stdin,
		logs: &testutil.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stdin.Close()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.exited
			t.Error("the proxy's process did not stop")
		}
	})
	start, err := p.do(chaosCommand{Cmd: "start", Path: path})
	if err != nil || start.Err != "" || len(start.Addrs) != 3 {
		t.Fatalf("the proxy did not start: %v %s\n%s", err, start.Err, p.logs.String())
	}
	p.addrs, p.started = start.Addrs, start
	return p
}

// do runs a command in the proxy's process.
func (p *chaosProxy) do(cmd chaosCommand) (chaosReply, error) {
	var reply chaosReply
	if err := p.in.Encode(cmd); err != nil {
		return reply, err
	}
	err := p.out.Decode(&reply)
	return reply, err
}
