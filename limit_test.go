package mailproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/session"
)

// MaxConnections counts the sessions of every server together; a client
// beyond it is refused in its protocol's words, and a place freed by a
// session that ends serves the next client.
func TestMaxConnectionsRefusesPolitely(t *testing.T) {
	names := []string{"imap", "pop3", "smtp"}
	refusals := map[string]string{
		"imap": "* BYE Too many connections, try again later",
		"pop3": "-ERR [SYS/TEMP] Too many connections, try again later",
		"smtp": "421 4.7.0 Too many connections, try again later",
	}
	cfg := &mailproxy.Config{}
	for _, name := range names {
		cfg.Servers = append(cfg.Servers, mailproxy.ServerConfig{Name: name, Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")},
			Server: protocols[name].server(session.Config{Logger: testutil.Discard})})
	}
	p := &mailproxy.Proxy{Config: cfg, MaxConnections: 2, Logger: testutil.Discard}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr := func(i int) string { return p.ServerAddrs(i)[0].String() }

	held := []*testutil.Client{testutil.Dial(t, "tcp", addr(0)), testutil.Dial(t, "tcp", addr(2))}
	held[0].Exchange("", "* OK")
	held[1].Exchange("", "220 ")
	for i, name := range names {
		c := testutil.Dial(t, "tcp", addr(i))
		if got := c.Line(); got != refusals[name] {
			t.Errorf("%s beyond the limit: %q, want %q", name, got, refusals[name])
		}
		if !c.Closed() {
			t.Errorf("%s: the refused connection stays open", name)
		}
	}
	held[0].Exchange("a LOGOUT\r\n", "* BYE", "a OK")
	testutil.WaitFor(t, "a place freed after a session ended", func() bool {
		c := testutil.Dial(t, "tcp", addr(1))
		return strings.HasPrefix(c.Line(), "+OK")
	})
}

// floodChildEnv makes the test binary the proxy of TestFlood (see
// TestMain).
const floodChildEnv = "MAILPROXY_TEST_FLOOD_CHILD"

// floodDescriptors is the proxy's descriptor limit in TestFlood: its
// default MaxConnections is then (96-32)/2 = 32 sessions.
const floodDescriptors = 96

// floodDefaultLimit is that default MaxConnections.
const floodDefaultLimit = (floodDescriptors - 32) / 2

func TestMain(m *testing.M) {
	if os.Getenv(floodChildEnv) != "" {
		os.Exit(floodChild())
	}
	if os.Getenv(chaosChildEnv) != "" {
		os.Exit(chaosChild())
	}
	os.Exit(m.Run())
}

// floodChild runs the proxy of TestFlood, with an in-process IMAP backend,
// under a low descriptor limit, with the default MaxConnections or, when
// the environment says "unlimited", none. It prints the proxy's address
// and serves until its standard input closes; its logs go to standard
// error.
func floodChild() int {
	lim := syscall.Rlimit{Cur: floodDescriptors, Max: floodDescriptors}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	be, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "alice", Password: "secret"}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer be.Close()
	maxConns := 0
	if os.Getenv(floodChildEnv) == "unlimited" {
		maxConns = -1
	}
	p := &mailproxy.Proxy{Logger: log, MaxConnections: maxConns, Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name: "imap", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")},
		Server: &imap.Server{Config: session.Config{Logger: log, Auth: auth.Static{"alice": {Password: "secret", Backend: be.Addr}}}},
	}}}}
	if err := p.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(p.ServerAddrs(0)[0])
	io.Copy(io.Discard, os.Stdin)
	p.Close()
	return 0
}

// A flood of connections far beyond the descriptor limit: the proxy stays
// up, keeps serving the session it had, and serves a login as soon as the
// flood ends. With the default MaxConnections it refuses what it cannot
// serve in IMAP's words; without a limit, accept fails with EMFILE, and
// the proxy pauses and retries.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes of their own")
	}
	for _, mode := range []string{"default", "unlimited"} {
		t.Run(mode, func(t *testing.T) {
			addr, logs, exited := startFloodChild(t, mode)
			before := login(t, addr) // a session relayed before the flood
			counts := flood(t, addr, 4*floodDescriptors)
			t.Logf("flood of %d connections: %v", 4*floodDescriptors, counts)
			if mode == "default" && (counts["refused"] == 0 || counts["greeted"] > floodDefaultLimit) {
				t.Errorf("%v, want refusals beyond the default limit of %d", counts, floodDefaultLimit)
			}
			if mode == "unlimited" && !strings.Contains(logs.String(), "too many open files") {
				t.Errorf("no EMFILE in the flood; logs:\n%s", logs.String())
			}
			select {
			case err := <-exited:
				t.Fatalf("the proxy exited in the flood: %v\n%s", err, logs.String())
			default:
			}
			before.Exchange("b NOOP\r\n", "b OK")
			start := time.Now()
			after := login(t, addr)
			t.Logf("a login right after the flood took %v", time.Since(start))
			after.Exchange("b NOOP\r\n", "b OK")
			if strings.Contains(logs.String(), "socket closed") {
				t.Errorf("the proxy closed a socket:\n%s", logs.String())
			}
		})
	}
}

// startFloodChild starts the proxy of TestFlood in a process of its own
// and returns its address, its logs, and the end of the process. The
// process is stopped when the test ends, and must exit cleanly.
func startFloodChild(t *testing.T, mode string) (addr string, logs *testutil.Buffer, exited <-chan error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), floodChildEnv+"="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs = &testutil.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("proxy process: %v\n%s", err, logs.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("proxy process did not stop")
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("no address from the proxy: %v\n%s", err, logs.String())
	}
	return strings.TrimSpace(line), logs, done
}

// login logs in as alice and returns the relayed session.
func login(t *testing.T, addr string) *testutil.Client {
	t.Helper()
	c := testutil.Dial(t, "tcp", addr)
	c.Exchange("", "* OK")
	c.Exchange("a LOGIN alice secret\r\n", "a OK")
	return c
}

// flood opens n connections at once, reads what each gets within two
// seconds, closes them all, and counts them by what they got: a greeting,
// the refusal, a close, or nothing (left in the listen queue).
func flood(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		conns  []net.Conn
		g      sync.WaitGroup
	)
	for range n {
		g.Go(func() {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			kind := "not connected"
			if err == nil {
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				switch {
				case strings.HasPrefix(line, "* OK"):
					kind = "greeted"
				case line == "* BYE Too many connections, try again later\r\n":
					kind = "refused"
				case err != nil && os.IsTimeout(err):
					kind = "queued"
				default:
					kind = "closed"
				}
			}
			mu.Lock()
			defer mu.Unlock()
			counts[kind]++
			if c != nil {
				conns = append(conns, c)
			}
		})
	}
	g.Wait()
	for _, c := range conns {
		c.Close()
	}
	return counts
}
