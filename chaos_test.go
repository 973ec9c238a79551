package mailproxy_test

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

// The chaos tests put a proxy under thousands of sessions at once while
// its auth service and backends fail at random, and prove that nothing
// breaks and nothing is left: no panic, no session that ends otherwise
// than its faults say, no goroutine, descriptor or connection once
// everything has closed, and every SMTP message the proxy accepted with
// 250 delivered by the backend exactly once. TestChaosReload does the
// same while reloading the proxy ten times.
//
// The proxy runs in a process of its own (chaosChild): a session costs it
// two descriptors, and the test's clients and backends two more, which
// one descriptor table of 20 000 could not hold for thousands of
// sessions.

// chaosFull runs the chaos tests at full size; without it they run a
// short form of a few hundred sessions that takes seconds (go test ./...,
// .ci/run):
//
//	go test -run Chaos -v -timeout 20m . -args -chaos.full
//
// The full form runs without -race, whose detector stops at 8128
// goroutines.
var chaosFull = flag.Bool("chaos.full", false, "run the chaos tests at full size (10 000 sessions)")

// chaosScale returns the size of the chaos tests: 10 000 sessions, as many
// at once as the descriptors of the test's process allow (8 000 with
// 20 000), with -chaos.full; a few hundred otherwise. The full form's
// timeouts are long: on two shared cores, the logins of 8 000 clients
// that connect at once reach the auth service seconds later, and one that
// waited past auth_http_timeout would end otherwise than its faults say.
func chaosScale() chaosSize {
	if *chaosFull {
		return chaosSize{sessions: 10000, concurrency: 10000, hold: 5 * time.Second, slow: time.Second,
			timeout: 20 * time.Second, authTimeout: 15 * time.Second, step: 2 * time.Second,
			reloadEvery: time.Second, wait: time.Minute}
	}
	return chaosSize{sessions: 400, concurrency: 200, hold: 300 * time.Millisecond, slow: 300 * time.Millisecond,
		timeout: 3 * time.Second, authTimeout: 2500 * time.Millisecond, step: 500 * time.Millisecond,
		reloadEvery: 200 * time.Millisecond, wait: 20 * time.Second}
}

// Protocols, in the order of the proxy's servers.
const (
	chaosIMAP = iota
	chaosPOP3
	chaosSMTP
)

var chaosProtocols = [3]string{"imap", "pop3", "smtp"}

// What the auth service does with a login, chosen at random for each
// session and written in its user name, so that the client knows what to
// expect.
const (
	authOK     = "ok"     // OK, at once
	authSlow   = "slow"   // OK, after up to chaosSize.slow
	authRefuse = "refuse" // a refusal without Auth-Wait: the proxy closes
	authError  = "error"  // status 500
	authClose  = "close"  // the connection closed without an answer
	authStall  = "stall"  // no answer until the proxy gives up (auth_http_timeout)
)

// What the backend does with a session the auth service accepted.
const (
	backendOK     = "ok"     // the mailtest backend, all the way
	backendDeny   = "deny"   // the backend refuses the login (a wrong password)
	backendRefuse = "refuse" // connection refused
	backendHang   = "hang"   // accepts and never says a word
	backendReset  = "reset"  // resets as the proxy logs in
	backendCut    = "cut"    // resets in the relay, at the client's first command
	// SMTP only: resets when the client ends its message, before the
	// backend has it whole, or just after the backend's 250 to it.
	backendCutData  = "cutdata"
	backendCutAfter = "cutafter"
)

// What the client does: its part, or one of two faults.
const (
	clientOK     = ""
	clientAbort  = "abort"  // resets the connection as soon as it has sent its login
	clientVanish = "vanish" // resets it in the relay: in SMTP, halfway through its message
)

var (
	chaosClientKinds    = []string{clientOK, clientAbort, clientVanish}
	chaosClientWeights  = []int{84, 8, 8}
	chaosAuthKinds      = []string{authOK, authSlow, authRefuse, authError, authClose, authStall}
	chaosAuthWeights    = []int{50, 10, 10, 10, 10, 10}
	chaosBackendKinds   = []string{backendOK, backendDeny, backendRefuse, backendHang, backendReset, backendCut}
	chaosBackendWeights = []int{55, 9, 9, 9, 9, 9}
	chaosSMTPCuts       = []string{backendCut, backendCutData, backendCutAfter}
)

// How a session ends, as the client sees it.
const (
	endOK        = "ok"        // logged in, worked, logged out
	endRefused   = "refused"   // the auth service's refusal, then the close
	endTemporary = "temporary" // a temporary failure; the client logs out
	endDenied    = "denied"    // the backend's refusal; the client logs out
	endCut       = "cut"       // logged in, then the connection ended
	endAborted   = "aborted"   // the client's abort
	endVanished  = "vanished"  // the client's vanishing
)

// chaosScenario is one client session: its protocol and the faults its
// login meets.
type chaosScenario struct {
	id      int
	seq     int // the sessions of one user: a probe of chaosLoop logs in again and again
	source  string
	proto   int
	client  string
	auth    string
	backend string
	hold    time.Duration // the pause of a relayed session
}

// user is the login name: the scenario, for the auth service to act on,
// and the session's number among those of the user.
func (s chaosScenario) user() string {
	return fmt.Sprintf("s%d-%s-%s-%d", s.id, s.auth, s.backend, s.seq)
}

// parseChaosUser reads a user name written by chaosScenario.user.
func parseChaosUser(user string) (s chaosScenario, ok bool) {
	f := strings.Split(user, "-")
	if len(f) != 4 || !strings.HasPrefix(f[0], "s") {
		return s, false
	}
	id, err := strconv.Atoi(f[0][1:])
	return chaosScenario{id: id, auth: f[1], backend: f[2]}, err == nil
}

// want is how the session should end.
func (s chaosScenario) want() string {
	switch s.client {
	case clientAbort:
		return endAborted
	case clientVanish:
		return endVanished // only drawn with an auth service and a backend that do not fail
	}
	switch s.auth {
	case authRefuse:
		return endRefused
	case authError, authClose, authStall:
		return endTemporary
	}
	switch s.backend {
	case backendOK:
		return endOK
	case backendDeny:
		return endDenied
	case backendCut, backendCutData, backendCutAfter:
		return endCut
	}
	return endTemporary
}

// delay is how long the slow auth service waits before it answers s.
func (s chaosScenario) delay(longest time.Duration) time.Duration {
	return time.Duration(s.id*7919%1000) * longest / 1000
}

// weighted draws one of kinds, each as often as its weight says.
func weighted(r *rand.Rand, kinds []string, weights []int) string {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := r.IntN(total)
	for i, w := range weights {
		if n < w {
			return kinds[i]
		}
		n -= w
	}
	return kinds[len(kinds)-1]
}

// chaosSize is how hard the chaos tests push (chaosScale).
type chaosSize struct {
	sessions    int           // client sessions in all
	concurrency int           // at most this many at once (fewer if descriptors are short)
	hold        time.Duration // longest pause of a relayed session
	slow        time.Duration // longest delay of a slow auth answer
	// timeout and authTimeout are the proxy's timeout and
	// auth_http_timeout of the first configuration; each reload adds a
	// step, up to two.
	timeout, authTimeout, step time.Duration
	reloadEvery                time.Duration // between the reloads of TestChaosReload
	wait                       time.Duration // the longest a client waits for a reply
}

// chaosConcurrency is how many sessions run at once: the size's, or what
// the test process's descriptors allow, at two a session (the client's
// socket and the backend's) and a margin for the auth service's.
func chaosConcurrency(t *testing.T, size chaosSize) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return min(size.sessions, size.concurrency, int(lim.Cur)*2/5)
}

// TestChaosSessions runs the load against a proxy whose auth service and
// backends fail at random (see chaosScenario): every session ends as its
// faults say, every message accepted with 250 is delivered once, and
// once the proxy has stopped nothing is left in it.
func TestChaosSessions(t *testing.T) {
	h := startChaos(t, chaosScale())
	run := newChaosRun()
	h.load(run, chaosConcurrency(t, h.size))
	h.check(run)
	h.settle()
	h.stop()
}

// TestChaosReload runs the load of TestChaosSessions while the proxy
// reloads ten times, each configuration with an auth service of its own,
// another timeout and auth_http_timeout, and another resolver or none;
// one of them is broken (it listens on an address in use), and its
// Reload fails. Every session ends as its faults say, those open across
// a reload too; a client that connects throughout is never refused; and
// once the load is over, nothing is left of the replaced configurations:
// no connection to their auth services, no resolver open, no server or
// auth_http client reachable.
func TestChaosReload(t *testing.T) {
	const reloads, broken = 10, 6
	h := startChaos(t, chaosScale())
	run := newChaosRun()
	loop := h.startLoop(run)
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		h.load(run, chaosConcurrency(t, h.size))
	}()
	var reloaded []time.Time
	for gen := 1; gen <= reloads; gen++ {
		// The reloads are spread over the load: each comes reloadEvery
		// after the one before, once its share of the sessions started.
		time.Sleep(h.size.reloadEvery)
		run.waitStarted(gen * h.size.sessions / (reloads + 1))
		a := h.startAuth()
		h.auths = append(h.auths, a)
		start := time.Now()
		reply, err := h.proxy.do(chaosCommand{Cmd: "reload", Path: h.writeConfig(gen, a, gen == broken)})
		switch {
		case err != nil:
			t.Fatalf("reload %d: %v\n%s", gen, err, h.tailLogs())
		case gen == broken && !strings.Contains(reply.Err, "address already in use"):
			t.Errorf("reload %d, of a broken configuration: %q, want address already in use", gen, reply.Err)
		case gen != broken && reply.Err != "":
			t.Errorf("reload %d: %s", gen, reply.Err)
		case gen != broken:
			h.running = a
			reloaded = append(reloaded, start)
		}
	}
	// The last configuration serves a login of each protocol, whenever
	// the load ends.
	for proto := range chaosProtocols {
		h.session(run, chaosScenario{id: h.size.sessions + 2, seq: proto + 1, source: chaosLoopSource,
			proto: proto, auth: authOK, backend: backendOK})
	}
	<-loaded
	probes := loop.stop()
	h.check(run)

	// Every reload came while sessions were open, and those finished as
	// their faults say (check).
	for i, at := range reloaded {
		open := 0
		for _, s := range run.spans {
			if s.start.Before(at) && s.end.After(at) {
				open++
			}
		}
		t.Logf("reload %d: %d sessions open across it", i+1, open)
		if open == 0 {
			t.Errorf("no session was open across reload %d: the load ended too early", i+1)
		}
	}
	t.Logf("the client loop logged in %d times during the load and its reloads (its failures are among those above)", probes)

	// The replaced configurations' connections to their auth services
	// close, and nothing of them stays reachable in the proxy.
	for i, a := range h.auths {
		if a == h.running {
			continue
		}
		testutil.WaitFor(t, fmt.Sprintf("the connections to auth service %d to close", i), func() bool { return a.openConns() == 0 })
	}
	if conns := h.settle(); conns == 0 {
		t.Error("the running configuration has no connection to its auth service")
	}
	h.stop()
}

// chaosRun is what a load of sessions did.
type chaosRun struct {
	mu         sync.Mutex
	started    int        // sessions of the load started so far
	progress   *sync.Cond // started has grown
	sessions   int
	injected   map[string]int // faults by kind: "auth refuse", "backend hang"
	ends       map[string]int // sessions by how they ended
	mismatches int
	samples    []string        // the first mismatches
	users      []string        // their user names
	accepted   map[string]bool // Message-IDs the proxy answered 250 after DATA
	abandoned  map[string]bool // Message-IDs of messages the client vanished from
	spans      []span          // when each session ran
	active     int
	peak       int
	elapsed    time.Duration
	// peakFDs are the most descriptors seen open in the test's process
	// and in the proxy's.
	peakFDs, peakProxyFDs int
}

type span struct{ start, end time.Time }

// load runs size.sessions client sessions, at most concurrency at once,
// with scenarios drawn at random, and records what they did in run.
func (h *chaos) load(run *chaosRun, concurrency int) {
	r := rand.New(rand.NewPCG(h.seed, 0))
	stopSampling := h.sample(run)
	start := time.Now()
	slots := make(chan struct{}, concurrency)
	var g sync.WaitGroup
	for id := range h.size.sessions {
		s := chaosScenario{id: id, source: chaosSources[id%len(chaosSources)], proto: r.IntN(3),
			auth: weighted(r, chaosAuthKinds, chaosAuthWeights)}
		s.backend = weighted(r, chaosBackendKinds, chaosBackendWeights)
		if s.backend == backendCut && s.proto == chaosSMTP {
			s.backend = chaosSMTPCuts[r.IntN(len(chaosSMTPCuts))]
		}
		s.client = weighted(r, chaosClientKinds, chaosClientWeights)
		if s.client == clientVanish && (s.auth != authOK && s.auth != authSlow || s.backend != backendOK) {
			s.client = clientOK // it vanishes from the relay
		}
		s.hold = time.Duration(r.Int64N(int64(h.size.hold) + 1))
		slots <- struct{}{}
		run.mu.Lock()
		run.started++
		run.mu.Unlock()
		run.progress.Broadcast()
		g.Go(func() {
			defer func() { <-slots }()
			h.session(run, s)
		})
	}
	g.Wait()
	run.elapsed = time.Since(start)
	stopSampling()
}

func newChaosRun() *chaosRun {
	run := &chaosRun{injected: map[string]int{}, ends: map[string]int{}, accepted: map[string]bool{}, abandoned: map[string]bool{}}
	run.progress = sync.NewCond(&run.mu)
	return run
}

// waitStarted waits until n sessions of the load have started.
func (run *chaosRun) waitStarted(n int) {
	run.mu.Lock()
	defer run.mu.Unlock()
	for run.started < n {
		run.progress.Wait()
	}
}

// sample records the peak descriptor counts of both processes until the
// returned func is called.
func (h *chaos) sample(run *chaosRun) (stop func()) {
	done := make(chan struct{})
	var g sync.WaitGroup
	g.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			mine, proxy := countFDs("/proc/self/fd"), countFDs(fmt.Sprintf("/proc/%d/fd", h.proxy.cmd.Process.Pid))
			run.mu.Lock()
			run.peakFDs, run.peakProxyFDs = max(run.peakFDs, mine), max(run.peakProxyFDs, proxy)
			run.mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() { close(done); g.Wait() }
}

// countFDs counts the descriptors a process has open, from its
// /proc/PID/fd.
func countFDs(dir string) int {
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

// session runs one client session and records how it ended.
func (h *chaos) session(run *chaosRun, s chaosScenario) {
	run.mu.Lock()
	run.sessions++
	if s.client != clientOK {
		run.injected["client "+s.client]++
	}
	if s.auth != authOK {
		run.injected["auth "+s.auth]++
	}
	if s.auth == authOK || s.auth == authSlow {
		if s.backend != backendOK {
			run.injected["backend "+s.backend]++
		}
	}
	run.active++
	run.peak = max(run.peak, run.active)
	run.mu.Unlock()

	start := time.Now()
	got, detail := h.converse(run, s)
	end := time.Now()

	want := s.want()
	if got != want {
		h.mu.Lock()
		if a, ok := h.asked[s.user()]; ok {
			detail += fmt.Sprintf(" (the auth service was last asked %v after the connect, and the session ended %v after it)",
				a.last.Sub(start).Round(time.Millisecond), end.Sub(start).Round(time.Millisecond))
		}
		h.mu.Unlock()
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	run.active--
	run.spans = append(run.spans, span{start, end})
	run.ends[got]++
	if got != want {
		run.mismatches++
		if len(run.samples) < 20 {
			run.samples = append(run.samples, fmt.Sprintf("%s %s (client %q): %s, want %s: %s",
				chaosProtocols[s.proto], s.user(), s.client, got, want, detail))
			run.users = append(run.users, s.user())
		}
	}
}

// check fails the test for every session that did not end as its faults
// say, and for every message accepted with 250 and not delivered exactly
// once; it logs the figures of the run.
func (h *chaos) check(run *chaosRun) {
	t := h.t
	t.Logf("%d sessions, at most %d at once, in %v; peak descriptors: %d in the test's process, %d in the proxy's",
		run.sessions, run.peak, run.elapsed.Round(time.Millisecond), run.peakFDs, run.peakProxyFDs)
	t.Logf("faults drawn: %s", formatCounts(run.injected))
	t.Logf("sessions ended: %s", formatCounts(run.ends))
	if run.mismatches > 0 {
		t.Errorf("%d sessions did not end as their faults say, such as:\n%s", run.mismatches, strings.Join(run.samples, "\n"))
		t.Logf("what the proxy logged of them:\n%s", h.proxyLogsOf(run.users))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// A login is one request to the auth service, or two when the
	// connection it went out on was closed without an answer (a kept-alive
	// connection the service may have closed as idle): a retry, once, as
	// RFC 9110 allows.
	var requests [3]int // logins asked once, twice, more often
	for user, a := range h.asked {
		requests[min(a.times, 3)-1]++
		if a.times > 2 {
			t.Errorf("the auth service was asked %d times about %s", a.times, user)
		}
	}
	t.Logf("auth services: %d logins asked once, %d twice (retried once on a kept connection closed without an answer), %d more often",
		requests[0], requests[1], requests[2])
	delivered, twice, lost := 0, 0, 0
	for id, n := range h.delivered {
		delivered += n
		if n > 1 {
			twice++
			t.Errorf("message %s delivered %d times", id, n)
		}
	}
	for id := range run.accepted {
		if h.delivered[id] == 0 {
			lost++
			t.Errorf("message %s accepted with 250 and never delivered", id)
		}
	}
	for id := range run.abandoned {
		if h.delivered[id] > 0 {
			t.Errorf("message %s delivered, though its client vanished halfway through it", id)
		}
	}
	t.Logf("SMTP: %d messages accepted with 250, %d delivered (%d of them to a client cut before its 250), %d twice, %d lost; %d abandoned halfway, none delivered",
		len(run.accepted), delivered, delivered-len(run.accepted)+lost, twice, lost, len(run.abandoned))
}

// kinds counts what names name by their first word ("imap.Server 9").
func kinds(names []string) string {
	counts := map[string]int{}
	for _, n := range names {
		kind, _, _ := strings.Cut(n, " ")
		counts[kind]++
	}
	return formatCounts(counts)
}

func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// settle waits until the proxy runs what it ran after its start, but for
// the running configuration's connections to its auth service (a
// descriptor each, and two goroutines at most) and the relay's epoll set,
// and until nothing is left of the configurations that reloads replaced.
// It returns the connections open to the running auth service.
func (h *chaos) settle() (conns int) {
	t := h.t
	var reply chaosReply
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		conns = h.running.openConns()
		if reply, err = h.proxy.do(chaosCommand{Cmd: "check"}); err != nil {
			t.Fatalf("check: %v\n%s", err, h.tailLogs())
		}
		extraGoroutines, extraFDs := reply.Goroutines-h.proxy.started.Goroutines-2*conns, reply.FDs-h.proxy.started.FDs-conns
		if len(reply.Retained) == 0 && reply.OpenResolvers == 0 && extraGoroutines <= 0 && extraFDs <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the load, of %d replaced configurations, still reachable: %s; resolvers not closed: %d; "+
				"%d goroutines and %d descriptors more than after the start and the running configuration's %d connections to its auth service",
				reply.Replaced, kinds(reply.Retained), reply.OpenResolvers, extraGoroutines, extraFDs, conns)
		}
	}
	t.Logf("proxy process: %d goroutines and %d descriptors after its start; after the load and %d reloads, %d and %d, with %d connections to the running auth service",
		h.proxy.started.Goroutines, h.proxy.started.FDs, reply.Replaced, reply.Goroutines, reply.FDs, conns)
	return conns
}

// stop stops the proxy's process and checks that it left nothing: no
// goroutine, no descriptor (but the relay's epoll set, which a process
// keeps once it has relayed), nothing of a replaced configuration.
func (h *chaos) stop() {
	t := h.t
	reply, err := h.proxy.do(chaosCommand{Cmd: "stop"})
	if err != nil {
		t.Fatalf("stop: %v\n%s", err, h.tailLogs())
	}
	if <-h.proxy.exited; h.proxy.err != nil {
		t.Errorf("the proxy's process: %v\n%s", h.proxy.err, h.tailLogs())
	}
	t.Logf("proxy process: %d goroutines and %d descriptors before it started; after the stop, %d goroutines and %d descriptors",
		reply.GoroutinesBefore, reply.FDsBefore, reply.Goroutines, reply.FDs)
	if reply.Err != "" {
		t.Errorf("Shutdown: %s", reply.Err)
	}
	if reply.Leaks != "" {
		t.Errorf("goroutines left in the proxy: %s", reply.Leaks)
	}
	var left []string
	epoll := false
	for _, fd := range reply.FDsLeft {
		if strings.HasSuffix(fd, " anon_inode:[eventpoll]") && !epoll {
			epoll = true // the relay's, kept for the process
			continue
		}
		left = append(left, fd)
	}
	if len(left) > 0 {
		t.Errorf("descriptors left in the proxy: %v", left)
	}
	if len(reply.Retained) > 0 || reply.OpenResolvers > 0 {
		t.Errorf("of %d replaced configurations, still reachable: %s; resolvers not closed: %d",
			reply.Replaced, kinds(reply.Retained), reply.OpenResolvers)
	}
	if n := strings.Count(h.proxy.logs.String(), "panic"); n > 0 {
		t.Errorf("%d panics in the proxy's logs:\n%s", n, h.tailLogs())
	}
}

// proxyLogsOf returns the lines of the proxy's logs that name one of
// users.
func (h *chaos) proxyLogsOf(users []string) string {
	var lines []string
	for line := range strings.Lines(h.proxy.logs.String()) {
		for _, u := range users {
			if strings.Contains(line, u) {
				lines = append(lines, line)
				break
			}
		}
	}
	return strings.Join(lines, "")
}

// tailLogs returns the end of the proxy's logs.
func (h *chaos) tailLogs() string {
	logs := h.proxy.logs.String()
	return logs[max(0, len(logs)-8<<10):]
}

// chaosLoop logs in to each of the proxy's servers in turn, again and
// again, with neither the auth service nor the backend failing: each
// configuration serves some of its logins, and a refused connection is a
// session that does not end as it should.
type chaosLoop struct {
	stopped chan struct{}
	g       sync.WaitGroup
	probes  atomic.Int64
}

// startLoop starts two goroutines of chaosLoop, which record their
// sessions in run.
func (h *chaos) startLoop(run *chaosRun) *chaosLoop {
	l := &chaosLoop{stopped: make(chan struct{})}
	for user := range 2 {
		l.g.Go(func() {
			for seq := 1; ; seq++ {
				select {
				case <-l.stopped:
					return
				default:
				}
				h.session(run, chaosScenario{id: h.size.sessions + user, seq: seq, source: chaosLoopSource,
					proto: seq % 3, auth: authOK, backend: backendOK})
				l.probes.Add(1)
			}
		})
	}
	return l
}

// stop stops the loop and returns how many sessions it ran.
func (l *chaosLoop) stop() int64 {
	close(l.stopped)
	l.g.Wait()
	return l.probes.Load()
}
