// Command mailproxy runs the mail proxy with an nginx-style configuration,
// or, without -c, an embedded demo that needs nothing else.
//
// Usage:
//
//	mailproxy [-c file] [-p prefix] [-e file] [-g directives] [-t] [-v]
//
// Signals: TERM and INT stop at once, QUIT stops gracefully (sessions
// finish), HUP reloads the configuration (a bad one keeps the old running).
//
// Profiles, for the bench tool (go run ./bench -cpuprofile/-memprofile):
// MAILPROXY_CPUPROFILE=file profiles the CPU from start to exit, and
// MAILPROXY_MEMPROFILE=file writes a heap profile at exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/config"
)

// version is the program's version, set at build time with -ldflags "-X main.version=…".
var version = "devel"

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	stopProfiles := startProfiles(os.Stderr)
	code := run(os.Args[1:], os.Stdout, os.Stderr, sigs)
	stopProfiles()
	os.Exit(code)
}

// options are the command line.
type options struct {
	conf, prefix, errorLog, globals string
	test, version                   bool
	demoAddr                        string
	demoPorts                       [3]int
	metrics                         *metricsServer // what every configuration loaded counts into
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("mailproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.conf, "c", "", "configuration `file` (nginx syntax); without it, run the embedded demo")
	fs.StringVar(&o.prefix, "p", "", "`prefix` for relative paths (default: the configuration's folder)")
	fs.StringVar(&o.errorLog, "e", "", "error log `file`, or stderr (overrides error_log)")
	fs.StringVar(&o.globals, "g", "", "global `directives` added to the configuration")
	fs.BoolVar(&o.test, "t", false, "test the configuration and exit")
	fs.BoolVar(&o.version, "v", false, "print the version and exit")
	fs.StringVar(&o.demoAddr, "demo-addr", "127.0.0.1", "IP `address` the demo listens on (0.0.0.0 in a container)")
	ports := fs.String("demo-ports", "1143,1110,1025", "IMAP,POP3,SMTP `ports` of the demo (0 picks a free port)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, parsePorts(*ports, &o.demoPorts)
}

func parsePorts(s string, ports *[3]int) error {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return fmt.Errorf("-demo-ports %q: want three ports", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("-demo-ports: invalid port %q", p)
		}
		ports[i] = n
	}
	return nil
}

// run is the whole program, apart from the process's signals and exit.
func run(args []string, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "mailproxy:", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "mailproxy version %s (%s)\n", version, runtime.Version())
		return 0
	}
	if o.conf == "" {
		return runDemo(o, stdout, stderr, sigs)
	}
	return runConfig(o, stderr, sigs)
}

// confPath is the configuration file, relative to the prefix as in nginx.
func (o *options) confPath() string {
	if o.prefix != "" && !filepath.IsAbs(o.conf) {
		return filepath.Join(o.prefix, o.conf)
	}
	return o.conf
}

func (o *options) load(log *slog.Logger) (*config.Config, error) {
	cfg, err := config.Load(o.confPath(), config.Options{Prefix: o.prefix, Globals: o.globals, Logger: log, Metrics: o.metrics.collector})
	if err != nil {
		return nil, err
	}
	if err := cfg.Proxy.Check(context.Background()); err != nil {
		cfg.Close()
		return nil, err
	}
	return cfg, nil
}

func runConfig(o *options, stderr io.Writer, sigs <-chan os.Signal) int {
	log := newLogger(stderr, slog.LevelInfo)
	o.metrics = newMetricsServer()
	cfg, err := o.load(log)
	if o.test {
		if err == nil {
			cfg.Close()
		}
		return testResult(stderr, o.confPath(), err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [emerg] %v\n", err)
		return 1
	}
	log, closeLog, err := o.openLog(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [emerg] %v\n", err)
		return 1
	}
	defer closeLog()
	if cfg.PID != "" {
		if err := writePID(cfg.PID); err != nil {
			log.Error("cannot write pid file", "err", err)
			return 1
		}
		defer os.Remove(cfg.PID)
	}
	if err := o.metrics.listen(cfg.MetricsListen, log); err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer o.metrics.close()
	reload := func() (*mailproxy.Config, error) {
		cfg, err := o.load(log)
		if err != nil {
			return nil, err
		}
		if err := o.metrics.listen(cfg.MetricsListen, log); err != nil {
			cfg.Close()
			return nil, err
		}
		return cfg.Proxy, nil
	}
	return serve(&mailproxy.Proxy{Config: cfg.Proxy, Logger: log}, reload, log, sigs, func() {})
}

func testResult(stderr io.Writer, path string, err error) int {
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [emerg] %v\nmailproxy: configuration file %s test failed\n", err, path)
		return 1
	}
	fmt.Fprintf(stderr, "mailproxy: the configuration file %s syntax is ok\nmailproxy: configuration file %s test is successful\n", path, path)
	return 0
}

func writePID(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

func runDemo(o *options, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	log := newLogger(stderr, slog.LevelInfo)
	if o.test {
		return testResult(stderr, "(embedded demo)", nil)
	}
	d, err := startDemo(o.demoAddr, o.demoPorts, log)
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [emerg] demo backends: %v\n", err)
		return 1
	}
	defer d.Close()
	cfg, err := d.config()
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [emerg] demo certificate: %v\n", err)
		return 1
	}
	p := &mailproxy.Proxy{Config: cfg, Logger: log}
	started := func() { d.banner(stdout, p) }
	return serve(p, d.config, log, sigs, started)
}

// serve starts p, calls started, and then serves until a signal stops it
// or a socket fails.
func serve(p *mailproxy.Proxy, reload func() (*mailproxy.Config, error), log *slog.Logger, sigs <-chan os.Signal, started func()) int {
	if err := p.Start(); err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	started()
	log.Info("started", "sockets", len(p.Addrs()))
	failed := make(chan error, 1)
	go func() { failed <- p.Wait() }()
	for {
		select {
		case err := <-failed:
			if errors.Is(err, mailproxy.ErrProxyClosed) {
				return 0
			}
			log.Error("stopped", "err", err)
			p.Close()
			return 1
		case sig := <-sigs:
			if done := handleSignal(p, sig, reload, log); done {
				return 0
			}
		}
	}
}

// handleSignal acts on one signal and reports whether the proxy stopped.
func handleSignal(p *mailproxy.Proxy, sig os.Signal, reload func() (*mailproxy.Config, error), log *slog.Logger) bool {
	switch sig {
	case syscall.SIGHUP:
		cfg, err := reload()
		if err == nil {
			if err = p.Reload(context.Background(), cfg); err != nil {
				cfg.Close() // the Proxy did not take it
			}
		}
		if err != nil {
			log.Error("reload failed; the old configuration goes on", "err", err)
		} else {
			log.Info("configuration reloaded")
		}
		return false
	case syscall.SIGQUIT:
		log.Info("graceful shutdown: waiting for sessions to end")
		p.Shutdown(context.Background())
	default:
		log.Info("stopping", "signal", sig.String())
		p.Close()
	}
	return true
}
