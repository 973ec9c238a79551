package mailproxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"time"
	"weak"

	"go.uber.org/goleak"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/config"
	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/resolver"
	"github.com/mailproxy/mailproxy/smtp"
)

// chaosChildEnv makes the test binary the proxy of the chaos tests (see
// TestMain): a process of its own, so that the proxy has a descriptor
// table of its own, as it would in production, and the test's clients
// and backends theirs.
const chaosChildEnv = "MAILPROXY_TEST_CHAOS_CHILD"

// chaosCommand is what the test asks the proxy process, one JSON object a
// line on its standard input.
type chaosCommand struct {
	// Cmd is "start" (the first command), "reload", "check" or "stop".
	Cmd string
	// Path is the configuration file of start and reload.
	Path string
}

// chaosReply is the proxy process's answer to a command, one JSON object
// a line on its standard output.
type chaosReply struct {
	// Err is why start or reload failed: config.Load's error, or
	// Proxy.Reload's.
	Err string `json:",omitempty"`
	// Addrs are the IMAP, POP3 and SMTP addresses, after start.
	Addrs []string `json:",omitempty"`
	// Goroutines and FDs are counted when the command is done.
	Goroutines, FDs int
	// Retained names what is still reachable of the configurations that
	// reloads replaced (check, stop): their servers, auth_http clients
	// and resolvers should all have been collected.
	Retained []string `json:",omitempty"`
	// OpenResolvers counts the resolvers of replaced configurations that
	// still answer lookups: a closed one fails at once.
	OpenResolvers int
	// Replaced counts the configurations that reloads replaced.
	Replaced int

	// GoroutinesBefore and FDsBefore are counted before the proxy
	// started (stop).
	GoroutinesBefore, FDsBefore int
	// Leaks is goleak's report after the stop; empty when none is left.
	Leaks string `json:",omitempty"`
	// FDsLeft lists the descriptors open after the stop that were not
	// before it started, by what /proc says they are.
	FDsLeft []string `json:",omitempty"`
}

// chaosGeneration is what the proxy process keeps of a configuration it
// ran: weak pointers to what should be collected once a reload has
// replaced it and its sessions have ended, and its resolvers, which
// should be closed.
type chaosGeneration struct {
	alive     []func() string // each returns the object's name while it is reachable
	resolvers []*resolver.Resolver
}

func newChaosGeneration(cfg *mailproxy.Config) *chaosGeneration {
	g := &chaosGeneration{}
	g.alive = append(g.alive, weakName("mailproxy.Config", cfg))
	for _, sc := range cfg.Servers {
		switch s := sc.Server.(type) {
		case *imap.Server:
			g.alive = append(g.alive, weakName("imap.Server "+sc.Name, s))
		case *pop3.Server:
			g.alive = append(g.alive, weakName("pop3.Server "+sc.Name, s))
		case *smtp.Server:
			g.alive = append(g.alive, weakName("smtp.Server "+sc.Name, s))
		}
	}
	for _, r := range cfg.Resources {
		switch r := r.(type) {
		case *auth.HTTP:
			g.alive = append(g.alive, weakName("auth.HTTP "+r.URL, r))
		case *resolver.Resolver:
			g.resolvers = append(g.resolvers, r)
		}
	}
	return g
}

// weakName returns a func that names p while it is reachable, and returns
// "" once it has been collected.
func weakName[T any](name string, p *T) func() string {
	w := weak.Make(p)
	return func() string {
		if w.Value() == nil {
			return ""
		}
		return name
	}
}

// chaosChild runs the proxy of the chaos tests: it loads the
// configuration of the start command, serves it, and then runs the
// commands of the test until stop. It returns the process's exit code.
func chaosChild() int {
	// The runtime's network poller is opened before the count of what was
	// open, so that only the proxy's own descriptors differ.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
	fdsBefore := descriptors()
	goroutinesBefore := runtime.NumGoroutine()
	ignore := goleak.IgnoreCurrent()

	in, out := json.NewDecoder(os.Stdin), json.NewEncoder(os.Stdout)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	outputs := &errorlog.Outputs{}
	load := func(path string) (*config.Config, error) {
		return config.Load(path, config.Options{Logger: logger, Outputs: outputs})
	}
	fail := func(err error) int {
		out.Encode(chaosReply{Err: err.Error()})
		return 1
	}

	var cmd chaosCommand
	if err := in.Decode(&cmd); err != nil || cmd.Cmd != "start" {
		return fail(fmt.Errorf("want start, got %+v (%v)", cmd, err))
	}
	cfg, err := load(cmd.Path)
	if err != nil {
		return fail(err)
	}
	p := &mailproxy.Proxy{Config: cfg.Proxy, Logger: cfg.Logger}
	if err := p.Start(); err != nil {
		cfg.Close()
		return fail(err)
	}
	current := newChaosGeneration(cfg.Proxy)
	var replaced []*chaosGeneration
	start := chaosReply{}
	for i := range 3 {
		start.Addrs = append(start.Addrs, p.ServerAddrs(i)[0].String())
	}
	out.Encode(start.counted())
	cfg = nil

	for {
		var cmd chaosCommand
		if err := in.Decode(&cmd); err != nil {
			p.Close() // the test is gone
			return 1
		}
		var reply chaosReply
		switch cmd.Cmd {
		case "reload":
			next, err := load(cmd.Path)
			if err == nil {
				if err = p.Reload(context.Background(), next.Proxy); err != nil {
					next.Close() // the Proxy did not take it
				}
			}
			if err != nil {
				reply.Err = err.Error()
				break
			}
			replaced = append(replaced, current)
			current = newChaosGeneration(next.Proxy)
		case "check":
			reply.inspect(replaced)
		case "stop":
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := p.Shutdown(ctx)
			cancel()
			if err != nil {
				reply.Err = err.Error()
			}
			reply.inspect(replaced)
			reply.GoroutinesBefore, reply.FDsBefore = goroutinesBefore, len(fdsBefore)
			if err := goleak.Find(ignore); err != nil {
				reply.Leaks = err.Error()
			}
			reply.FDsLeft = newDescriptors(fdsBefore, descriptors())
			out.Encode(reply.counted())
			return 0
		default:
			reply.Err = "unknown command " + cmd.Cmd
		}
		out.Encode(reply.counted())
	}
}

// counted returns r with the process's goroutines and descriptors
// counted now.
func (r chaosReply) counted() chaosReply {
	r.Goroutines, r.FDs = runtime.NumGoroutine(), len(descriptors())
	return r
}

// inspect collects the garbage and reports what is left of the replaced
// configurations.
func (r *chaosReply) inspect(replaced []*chaosGeneration) {
	runtime.GC()
	runtime.GC()
	r.Replaced = len(replaced)
	for _, g := range replaced {
		for _, alive := range g.alive {
			if name := alive(); name != "" {
				r.Retained = append(r.Retained, name)
			}
		}
		for _, res := range g.resolvers {
			if !resolverClosed(res) {
				r.OpenResolvers++
			}
		}
	}
}

// probeIP is the next address resolverClosed looks up: one no resolver
// has cached.
var probeIP = netip.MustParseAddr("198.18.0.0")

// resolverClosed reports whether r has been closed: a lookup that needs a
// name server then fails at once with net.ErrClosed.
func resolverClosed(r *resolver.Resolver) bool {
	probeIP = probeIP.Next()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := r.LookupHost(ctx, probeIP)
	return errors.Is(err, net.ErrClosed)
}

// descriptors returns what each open descriptor of the process is, by
// its number.
func descriptors() map[string]string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	fds := make(map[string]string, len(entries))
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil { // the directory's own descriptor is gone by now
			fds[e.Name()] = target
		}
	}
	return fds
}

// newDescriptors lists what is open in after and was not in before.
func newDescriptors(before, after map[string]string) []string {
	var left []string
	for fd, target := range after {
		if before[fd] != target {
			left = append(left, fd+" "+target)
		}
	}
	slices.Sort(left)
	return left
}
