// Command bench measures mailproxy against nginx's mail module and
// against direct connections to the backends (issue 16).
//
// It starts everything on 127.0.0.1 and stops it after: scripted IMAP,
// POP3 and SMTP backends and an auth_http service in its own process,
// our proxy as the example binary built into a temporary folder, and
// nginx with the same configuration when it is installed. The proxies
// are pinned to the same CPUs; the generator runs on the others.
//
//	go run ./bench                 # the full run (several minutes)
//	go run ./bench -quick          # a seconds-long smoke round
//	go run ./bench -json           # the results as JSON
//
// See bench/README.md for the latest table and what each figure means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick       bool
	scenarios   []string
	contenders  []string
	protocols   []string
	concurrency []int
	rounds      int
	duration    time.Duration
	idle        int
	bulkMiB     int
	tls         bool
	cpus        int
	proxyCPUs   string
	jsonOut     bool
	cpuProfile  string
	memProfile  string
	proxyBin    string
	nginxBin    string
	keep        bool
	table       string
	verbose     bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "a seconds-long smoke round: one short round of each scenario, small sizes")
	scenarios := fs.String("scenarios", "login,idle,bulk,tls", "`list` of scenarios: login, idle, bulk, tls")
	contenders := fs.String("contenders", "direct,mailproxy,nginx", "`list` of contenders")
	protocols := fs.String("protocols", "imap,pop3,smtp", "`list` of protocols for the login and bulk scenarios")
	conc := fs.String("c", "1,64,512", "`list` of concurrencies of the login scenario")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of each measurement (the contenders take turns in each)")
	fs.DurationVar(&o.duration, "duration", 1500*time.Millisecond, "length of one timed run")
	fs.IntVar(&o.idle, "idle", 10000, "idle sessions of the idle scenario")
	fs.IntVar(&o.bulkMiB, "bulk", 64, "MiB of one bulk transfer")
	fs.BoolVar(&o.tls, "tls", true, "TLS cases too (bulk and idle over implicit TLS, and the tls scenario)")
	fs.IntVar(&o.cpus, "cpus", 0, "`N` CPUs for each proxy (0: half of them, at least one); nginx gets N workers")
	fs.StringVar(&o.proxyCPUs, "proxy-cpus", "", "the proxies' CPU `list` (\"0\", \"0-1\"), overriding -cpus; the generator takes the others")
	fs.BoolVar(&o.jsonOut, "json", false, "print the results as JSON instead of the table")
	fs.StringVar(&o.table, "table", "", "print the table of the results of an earlier -json run saved in `file`, and run nothing")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "our proxy writes a CPU profile of the login, bulk and tls scenarios to `file` (the idle scenario's instances to file.idle-imap and file.idle-imaps)")
	fs.StringVar(&o.memProfile, "memprofile", "", "our proxy writes a heap profile at its exit to `file` (the idle scenario's instances likewise)")
	fs.StringVar(&o.proxyBin, "proxy-bin", "", "our proxy's `binary` (default: go build ./examples/mailproxy)")
	fs.StringVar(&o.nginxBin, "nginx", "", "nginx `binary` (default: from PATH or /usr/sbin)")
	fs.IntVar(&segmentSize, "mss", 0, "TCP maximum segment `size` the clients and backends announce (0: loopback's, 64 KiB; 1448 for Ethernet's)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (configurations, logs)")
	fs.BoolVar(&o.verbose, "v", false, "log each run to standard error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		// Only what was not given on the command line shrinks.
		if !set["rounds"] {
			o.rounds = 1
		}
		if !set["duration"] {
			o.duration = 300 * time.Millisecond
		}
		if !set["idle"] {
			o.idle = 500
		}
		if !set["bulk"] {
			o.bulkMiB = 4
		}
		if !set["c"] {
			*conc = "1,16"
		}
	}
	o.scenarios = splitList(*scenarios)
	o.contenders = splitList(*contenders)
	o.protocols = splitList(*protocols)
	for _, s := range o.scenarios {
		if _, ok := scenarioTitles[s]; !ok {
			return nil, fmt.Errorf("-scenarios: unknown %q", s)
		}
	}
	for _, c := range o.contenders {
		if !slices.Contains(contenderNames, c) {
			return nil, fmt.Errorf("-contenders: unknown %q", c)
		}
	}
	for _, p := range o.protocols {
		if p != "imap" && p != "pop3" && p != "smtp" {
			return nil, fmt.Errorf("-protocols: unknown %q", p)
		}
	}
	for _, s := range splitList(*conc) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-c: bad concurrency %q", s)
		}
		o.concurrency = append(o.concurrency, n)
	}
	if o.rounds < 1 || o.duration <= 0 || o.idle < 0 || o.bulkMiB < 1 {
		return nil, errors.New("-rounds, -duration and -bulk must be positive, -idle not negative")
	}
	return o, nil
}

func splitList(s string) []string {
	var l []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			l = append(l, f)
		}
	}
	return l
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if o.table != "" {
		res, err := readResults(o.table)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		res.writeTable(os.Stdout, res.Contenders)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if o.jsonOut {
		res.writeJSON(os.Stdout)
		return
	}
	res.writeTable(os.Stdout, res.Contenders)
}

// harness is what a run has started, and its results.
type harness struct {
	opts        *options
	dir         string
	proxyCPUs   []int
	genCPUs     []int
	proxyBin    string
	nginx       *nginxInfo
	backends    map[string]*backend
	tlsBackends map[string]*backend
	auth        *authService
	conf        confData
	src         sources
	fileLimit   uint64 // RLIMIT_NOFILE, the proxies' too
	res         *results
	log         *log.Logger
}

func (h *harness) logf(format string, args ...any) {
	if h.log != nil {
		h.log.Printf(format, args...)
	}
}

// run runs the scenarios asked for and returns their results.
func run(ctx context.Context, o *options, stderr io.Writer) (*results, error) {
	h := &harness{opts: o, res: &results{Meta: map[string]string{}, Contenders: o.contenders}}
	if o.verbose {
		h.log = log.New(stderr, "bench: ", log.Ltime|log.Lmicroseconds)
	}
	dir, err := os.MkdirTemp("", "mailproxy-bench-")
	if err != nil {
		return nil, err
	}
	h.dir = dir
	if o.keep {
		fmt.Fprintf(stderr, "bench: keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := h.chooseCPUs(); err != nil {
		return nil, err
	}
	// Build before pinning, on every CPU.
	h.proxyBin = o.proxyBin
	if h.proxyBin == "" && slices.Contains(o.contenders, mailproxy) {
		h.logf("building examples/mailproxy")
		if h.proxyBin, err = buildMailproxy(ctx, dir); err != nil {
			return nil, err
		}
	}
	if slices.Contains(o.contenders, nginx) {
		h.nginx = findNginx(o.nginxBin)
	}
	if len(h.genCPUs) > 0 {
		if err := pinSelf(h.genCPUs); err != nil {
			return nil, err
		}
	}
	h.fileLimit = raiseFileLimit(uint64(max(1<<16, 8*o.idle+8192)))
	h.meta()

	// Ports per backend: many idle sessions need several, as the
	// proxies connect to them from one address.
	ports := max(2, o.idle/20000+2)
	h.src = newSources(max(4, o.idle/20000+2))
	msg := makeMessage(o.bulkMiB << 20)
	h.backends = map[string]*backend{}
	backendAddrs := map[string][]string{}
	defer func() {
		for _, b := range h.backends {
			b.Close()
		}
	}()
	for _, proto := range []string{"imap", "pop3", "smtp"} {
		b, err := startBackend(proto, ports, msg, nil)
		if err != nil {
			return nil, err
		}
		h.backends[proto] = b
		backendAddrs[proto] = b.addrs()
	}
	if h.auth, err = startAuth(backendAddrs); err != nil {
		return nil, err
	}
	defer h.auth.Close()
	h.conf = confData{Auth: h.auth.addr(), Conns: max(4096, 2*o.idle+1024)}
	if o.tls {
		if err := h.setupTLS(); err != nil {
			return nil, err
		}
		defer func() {
			for _, b := range h.tlsBackends {
				b.Close()
			}
		}()
	}

	// Scenarios 1, 2 and 4 share one instance of each proxy.
	if want(o, "login", "bulk", "tls") {
		cs, err := h.startAll("main")
		if err != nil {
			return nil, err
		}
		if want(o, "login") {
			h.loginScenario(ctx, cs)
		}
		if want(o, "bulk") {
			h.bulkScenario(ctx, cs)
		}
		if want(o, "tls") && o.tls {
			h.tlsScenario(ctx, cs)
		}
		for _, c := range cs {
			t := time.Now()
			c.stop()
			h.logf("%s stopped in %v", c.name, time.Since(t))
			h.checkExit(c)
		}
	}
	if want(o, "idle") && o.idle > 0 {
		h.idleScenario(ctx)
	}
	return h.res, ctx.Err()
}

func want(o *options, scenarios ...string) bool {
	for _, s := range scenarios {
		if slices.Contains(o.scenarios, s) {
			return true
		}
	}
	return false
}

// startAll starts the contenders asked for, each in its own folder named
// after the instance.
func (h *harness) startAll(instance string) ([]*contender, error) {
	var cs []*contender
	for _, name := range h.opts.contenders {
		c, err := h.startContender(name, filepath.Join(h.dir, instance+"-"+name), instance)
		if err != nil {
			for _, c := range cs {
				c.stop()
			}
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// checkExit notes a proxy that did not stop cleanly.
func (h *harness) checkExit(c *contender) {
	if c.proc == nil {
		return
	}
	if c.proc.err != nil {
		h.res.note("%s did not exit cleanly: %v", c.name, c.proc.err)
	}
}

// chooseCPUs splits the CPUs between the proxies and the generator.
func (h *harness) chooseCPUs() error {
	all := allowedCPUs()
	switch {
	case h.opts.proxyCPUs != "":
		cpus, err := cpuList(h.opts.proxyCPUs)
		if err != nil {
			return err
		}
		for _, c := range cpus {
			if !slices.Contains(all, c) {
				return fmt.Errorf("-proxy-cpus: CPU %d is not ours (we have %s)", c, formatCPUs(all))
			}
		}
		h.proxyCPUs = cpus
	default:
		n := h.opts.cpus
		if n <= 0 {
			n = max(1, len(all)/2)
		}
		h.proxyCPUs = all[:min(n, len(all))]
	}
	for _, c := range all {
		if !slices.Contains(h.proxyCPUs, c) {
			h.genCPUs = append(h.genCPUs, c)
		}
	}
	return nil
}

// meta records what the run was.
func (h *harness) meta() {
	m := h.res.Meta
	m["date"] = time.Now().UTC().Format("2006-01-02 15:04 UTC")
	m["machine"] = fmt.Sprintf("%d CPUs (%s)", runtime.NumCPU(), cpuModel())
	m["go"] = runtime.Version()
	m["proxy CPUs"] = formatCPUs(h.proxyCPUs) + fmt.Sprintf(" (nginx worker_processes %d; mailproxy GOMAXPROCS from the same affinity)", len(h.proxyCPUs))
	if len(h.genCPUs) > 0 {
		m["generator CPUs"] = formatCPUs(h.genCPUs) + " (clients, backends, auth_http: the bench process)"
	} else {
		m["generator CPUs"] = "shared with the proxies (no CPU left over)"
	}
	switch {
	case !slices.Contains(h.opts.contenders, nginx):
	case h.nginx == nil:
		m["nginx"] = "not installed"
	default:
		m["nginx"] = h.nginx.version + " (" + h.nginx.bin + ")"
	}
	o := h.opts
	m["run"] = fmt.Sprintf("rounds %d × %v per contender and case, concurrency %v, idle %d, bulk %d MiB, TLS %v",
		o.rounds, o.duration, o.concurrency, o.idle, o.bulkMiB, o.tls)
	if segmentSize > 0 {
		m["MSS"] = strconv.Itoa(segmentSize) + " (clients and backends)"
	}
	m["RLIMIT_NOFILE"] = strconv.FormatUint(h.fileLimit, 10)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}
