// Command mailproxy runs the mail proxy with an nginx-style configuration,
// or, without -c, an embedded demo that needs nothing else.
//
// Usage:
//
//	mailproxy [-c file] [-p prefix] [-e file] [-g directives] [-t] [-v] [-s signal] [-log-format nginx|json]
//
// Signals: TERM and INT stop at once, QUIT stops gracefully (sessions
// finish, within worker_shutdown_timeout), HUP reloads the configuration
// (a bad one keeps the old running), USR1 reopens the log files, USR2
// starts a new binary that takes over the listening sockets (as nginx's,
// with -c; upgrade.go). Sockets passed by systemd's socket activation are
// served too (systemd.go).
// -s stop|quit|reopen|reload sends the running program TERM, QUIT, USR1
// or HUP through its pid file, as nginx -s does. Started as root, the
// program serves as the user of the user directive (nobody by default)
// once its sockets are open, with a privileged helper for what needs root
// after (helper.go).
//
// The logs are nginx's error log lines, or JSON lines with -log-format
// json (or error_log_format json; in the configuration): see log.go.
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
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/config"
	"github.com/mailproxy/mailproxy/errorlog"
)

// version is the program's version, set at build time with -ldflags "-X main.version=…".
var version = "devel"

func main() {
	if args, ok := os.LookupEnv(helperEnv); ok {
		os.Exit(runHelper(args))
	}
	wholeProcess = true
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1)
	stopProfiles := startProfiles(os.Stderr)
	code := run(os.Args[1:], os.Stdout, os.Stderr, sigs)
	stopProfiles()
	os.Exit(code)
}

// options are the command line.
type options struct {
	conf, prefix, errorLog, globals string
	logFormat                       string
	signal                          string // -s
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
	fs.StringVar(&o.logFormat, "log-format", "", "log `format`: nginx (error log lines) or json (JSON lines); overrides error_log_format")
	fs.BoolVar(&o.test, "t", false, "test the configuration and exit")
	fs.BoolVar(&o.version, "v", false, "print the version and exit")
	fs.StringVar(&o.signal, "s", "", "send `signal` to the running program: stop, quit, reopen or reload")
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
	if o.signal != "" {
		return signalProcess(o, stderr)
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

func (o *options) load(logs *logs, files config.Files) (*config.Config, error) {
	cfg, err := config.Load(o.confPath(), config.Options{Prefix: o.prefix, Globals: o.globals, Logger: logs.log,
		ErrorLog: o.errorLog, LogFormat: o.logFormat, Outputs: logs.outputs, Files: files, Metrics: o.metrics.collector})
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
	logs, err := o.openLogs(stderr, errorlog.LevelNotice, "")
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [emerg] %v\n", err)
		return 1
	}
	defer logs.close()
	log := logs.log
	o.metrics = newMetricsServer()
	cfg, err := o.load(logs, nil)
	if o.test {
		if err == nil {
			cfg.Close()
		}
		return testResult(stderr, o.confPath(), err)
	}
	if err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, err.Error())
		return 1
	}
	logs.use(cfg)
	proc, err := startProcess(o, cfg, log)
	if err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, "cannot start", "err", err)
		cfg.Close()
		return 1
	}
	defer proc.exit()
	inherited, parent, err := inheritedSockets()
	if err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, "cannot take the inherited sockets", "err", err)
		return 1
	}
	if err := o.metrics.listen(cfg.MetricsListen, log); err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, "cannot start", "err", err)
		return 1
	}
	defer o.metrics.close()
	p := &mailproxy.Proxy{Config: cfg.Proxy, Logger: log, MaxConnections: cfg.MaxConnections, Inherited: inherited}
	up := startUpgrader(p, proc.launch, parent, log)
	defer up.stop()
	reload := func() error {
		files, err := proc.files()
		if err != nil {
			return err
		}
		cfg, err := o.load(logs, files)
		if err != nil {
			return err
		}
		proc.reloaded(cfg)
		if err := o.metrics.listen(cfg.MetricsListen, log); err != nil {
			cfg.Close()
			return err
		}
		if err := p.Reload(context.Background(), cfg.Proxy); err != nil {
			cfg.Close() // the Proxy did not take it
			return explainReload(err)
		}
		logs.use(cfg)
		return nil
	}
	var notify *notifySocket
	listening := func() error {
		logs.started()
		var err error
		if notify, err = dialNotify(); err != nil { // before the switch of user
			log.Warn("cannot notify systemd", "err", err)
		}
		if err := proc.switchUser(); err != nil {
			return err
		}
		logs.openThrough(proc.helper)
		return nil
	}
	serving := func() {
		defer notify.Close()
		if err := notify.ready(); err != nil {
			log.Warn("cannot notify systemd", "err", err)
		}
	}
	return serve(p, reload, logs, sigs, listening, serving)
}

func testResult(stderr io.Writer, path string, err error) int {
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [emerg] %v\nmailproxy: configuration file %s test failed\n", err, path)
		return 1
	}
	fmt.Fprintf(stderr, "mailproxy: the configuration file %s syntax is ok\nmailproxy: configuration file %s test is successful\n", path, path)
	return 0
}

func runDemo(o *options, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	logs, err := o.openLogs(stderr, errorlog.LevelInfo, "stderr")
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [emerg] %v\n", err)
		return 1
	}
	defer logs.close()
	log := logs.log
	if o.test {
		return testResult(stderr, "(embedded demo)", nil)
	}
	d, err := startDemo(o.demoAddr, o.demoPorts, log)
	if err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, "demo backends", "err", err)
		return 1
	}
	defer d.Close()
	cfg, err := d.config()
	if err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, "demo certificate", "err", err)
		return 1
	}
	proc, err := startDemoProcess(log)
	if err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, "cannot start", "err", err)
		return 1
	}
	p := &mailproxy.Proxy{Config: cfg, Logger: log}
	reload := func() error {
		cfg, err := d.config()
		if err == nil {
			if err = p.Reload(context.Background(), cfg); err != nil {
				cfg.Close()
			}
		}
		return err
	}
	listening := func() error {
		logs.started()
		return proc.switchUser()
	}
	return serve(p, reload, logs, sigs, listening, func() { d.banner(stdout, p) })
}

// serve opens p's sockets, calls listening (which switches user), starts
// p, so that no session is served before the switch, calls serving, and
// then serves until a signal stops it or a socket fails. reload loads the
// configuration again and gives it to p.
func serve(p *mailproxy.Proxy, reload func() error, logs *logs, sigs <-chan os.Signal, listening func() error, serving func()) int {
	log := logs.log
	if err := p.Listen(); err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, "cannot start", "err", err)
		return 1
	}
	err := listening()
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		log.Log(context.Background(), errorlog.LevelEmerg, "cannot start", "err", err)
		p.Close()
		return 1
	}
	serving()
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
			if done := handleSignal(p, sig, reload, logs); done {
				return 0
			}
		}
	}
}

// handleSignal acts on one signal and reports whether the proxy stopped.
func handleSignal(p *mailproxy.Proxy, sig os.Signal, reload func() error, logs *logs) bool {
	log := logs.log
	switch sig {
	case syscall.SIGUSR1:
		logs.reopen()
		return false
	case syscall.SIGHUP:
		if err := reload(); err != nil {
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
