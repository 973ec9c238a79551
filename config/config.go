// Package config reads an nginx-style configuration into the option
// structs of mailproxy and its protocol packages.
//
// It is an adapter, as Caddy's Caddyfile adapter is: the root and protocol
// packages never see nginx syntax, and a program may build the same
// structs in Go instead. A whole nginx.conf loads: the mail block is
// applied with the main context's directives that concern a mail proxy
// (error_log, pid, user, worker_rlimit_nofile, worker_connections,
// worker_shutdown_timeout), the main context's others that have no
// meaning here (daemon, worker_processes, …) are skipped with a notice
// naming what replaces them, and every other block (http, stream, …) is
// skipped.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/resolver"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// Options tune Load.
type Options struct {
	// Prefix is the folder that relative paths (pid, error_log, and the
	// certificates, keys and other files of the ssl_* directives) are
	// taken from (nginx's -p). Empty means the configuration file's
	// folder.
	Prefix string
	// Globals are extra top-level directives (nginx's -g), such as
	// "pid /run/mail.pid; daemon off;".
	Globals string
	// Auth, when set, authenticates for every server instead of the
	// auth_http service: how a program plugs in its own callback.
	Auth auth.Authenticator
	// Logger receives warnings about directives and debug lines about
	// skipped blocks. Nil means slog.Default().
	Logger *slog.Logger
	// ErrorLog, when set, replaces the main context's error_log
	// directives (nginx's -e): "stderr", a file, or "syslog:…", at the
	// most verbose of their levels (error without them).
	ErrorLog string
	// LogFormat, when set, replaces error_log_format: "nginx" or "json".
	LogFormat string
	// Outputs opens the error logs' files and sockets. Nil means a new
	// Outputs for this Load. A program that reloads passes the same one to
	// every Load, so that a file named by the running configuration and
	// the next stays one descriptor, and its Reopen reopens every file in
	// use (nginx's SIGUSR1).
	Outputs *errorlog.Outputs
	// Files reads the configuration file, the files it includes and those
	// of the ssl_* directives. Nil means SystemFiles.
	Files Files

	// Metrics, when set, counts what the servers Load builds do (their
	// session.Config.Metrics) and the lookups of the resolvers whose
	// status_zone names a zone. Give every Load of a program the same
	// one, so that the counts go on across reloads: a *metrics.Collector.
	Metrics Metrics

	// mainOnly stops Load after the main context (LoadMain).
	mainOnly bool
}

// Metrics counts what the servers and resolvers of a loaded configuration
// do: *metrics.Collector is one.
type Metrics interface {
	session.Metrics
	// Resolver returns what counts the lookups of the resolvers whose
	// status_zone is zone.
	Resolver(zone string) resolver.Metrics
}

// Config is a loaded configuration.
type Config struct {
	// Proxy is the configuration of the mail block, ready for a
	// mailproxy.Proxy.
	Proxy *mailproxy.Config
	// Logger writes to the logs of the main context: its error_log
	// directives (or Options.ErrorLog), else standard error at level
	// error. A server block without error_log of its own, in a mail block
	// without one, logs there too.
	Logger *slog.Logger
	// ErrorLog lists the targets Logger writes to: "stderr", absolute
	// file paths, "syslog:…".
	ErrorLog []string
	// PID is the top-level pid file, made absolute; empty when not set.
	PID string
	// User and Group are the arguments of the user directive: whom a
	// program started as root serves as. Empty when not set; Group is
	// empty when the directive names only the user.
	User, Group string
	// RlimitNofile is worker_rlimit_nofile: the limit of open descriptors
	// to set at start. Zero when not set.
	RlimitNofile int
	// MaxConnections bounds the client sessions of the whole proxy
	// (mailproxy.Proxy.MaxConnections): max_connections, or
	// worker_connections in the events block, the smaller when both are
	// set. Zero when neither is.
	MaxConnections int

	// shutdownTimeout is worker_shutdown_timeout, for Proxy.
	shutdownTimeout time.Duration
	// MetricsListen is the address of the mail block's metrics_listen
	// (ours): where a program serves the Prometheus metrics of
	// Options.Metrics. Empty when not set or off.
	MetricsListen string
}

// Close closes what Load created for the configuration (the auth_http
// clients' connections, the resolvers' queries, the error logs' files
// and sockets), for a Config that no Proxy runs. A Proxy that
// runs Proxy closes them itself when it is done with it.
func (c *Config) Close() error { return c.Proxy.Close() }

// Load reads the configuration file at path.
func Load(path string, opts Options) (*Config, error) {
	top, err := parseFile(path, opts.files())
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = filepath.Dir(path)
	}
	return load(path, top, opts)
}

// LoadBytes reads a configuration held in memory; name is used in
// messages and includes are relative to dir.
func LoadBytes(name string, src []byte, dir string, opts Options) (*Config, error) {
	top, err := Parse(name, src, dir)
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = dir
	}
	return load(name, top, opts)
}

func load(name string, top []*Directive, opts Options) (*Config, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Globals != "" {
		globals, err := ParseDirectives("-g", opts.Globals)
		if err != nil {
			return nil, err
		}
		top = append(top, globals...)
	}
	cfg := &Config{}
	var mail, format *Directive
	var mainLogs []logSpec
	for _, d := range top {
		var err error
		switch d.Name {
		case "mail":
			mail, err = mailBlock(mail, d)
		case "error_log":
			if err = topLevel(d, 1, 2); err == nil {
				var spec logSpec
				if spec, err = parseErrorLog(d, opts); err != nil {
					err = errorAt(d, fmt.Sprintf("%v in \"error_log\" directive", err))
				}
				mainLogs = append(mainLogs, spec)
			}
		case "error_log_format":
			if err = topLevel(d, 1, 1); err == nil && format != nil {
				err = errorAt(d, "\"error_log_format\" directive is duplicate")
			}
			format = d
		case "pid":
			if err = topLevel(d, 1, 1); err == nil {
				cfg.PID = opts.path(d.Args[0])
			}
		default:
			err = cfg.mainDirective(d, opts.Logger)
		}
		if err != nil {
			return nil, err
		}
	}
	if opts.mainOnly {
		return cfg, nil
	}
	if mail == nil {
		return nil, fmt.Errorf("%s: no \"mail\" block", name)
	}
	logs, err := newLogLoad(opts, format)
	if err != nil {
		return nil, err
	}
	specs := logs.mainLogs(mainLogs)
	if cfg.Logger, err = logs.logger(specs); err != nil {
		logs.close()
		return nil, err
	}
	for _, s := range specs {
		cfg.ErrorLog = append(cfg.ErrorLog, s.target)
	}
	if cfg.Proxy, err = loadMail(mail, opts, logs, cfg.Logger); err != nil {
		logs.close()
		return nil, err
	}
	for _, o := range logs.opened {
		cfg.Proxy.Resources = append(cfg.Proxy.Resources, o)
	}
	cfg.Proxy.ShutdownTimeout = cfg.shutdownTimeout
	cfg.MetricsListen = metricsListen(mail)
	return cfg, nil
}

// newLogLoad reads the log format: Options.LogFormat, else the
// error_log_format directive (ours), else nginx's lines.
func newLogLoad(opts Options, format *Directive) (*logLoad, error) {
	l := &logLoad{opts: opts, outputs: opts.Outputs}
	if l.outputs == nil {
		l.outputs = &errorlog.Outputs{}
	}
	var err error
	switch {
	case opts.LogFormat != "":
		l.format, err = errorlog.ParseFormat(opts.LogFormat)
	case format != nil:
		if l.format, err = errorlog.ParseFormat(format.Args[0]); err != nil {
			err = errorAt(format, fmt.Sprintf("%v in \"error_log_format\" directive", err))
		}
	}
	return l, err
}

func (o Options) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(o.Prefix, p)
}

func mailBlock(seen, d *Directive) (*Directive, error) {
	switch {
	case !d.HasBlock:
		return nil, errorAt(d, "directive \"mail\" has no opening \"{\"")
	case len(d.Args) != 0:
		return nil, errorAt(d, "invalid number of arguments in \"mail\" directive")
	case seen != nil:
		return nil, errorAt(d, "\"mail\" directive is duplicate")
	}
	return d, nil
}

func topLevel(d *Directive, minArgs, maxArgs int) error {
	if d.HasBlock {
		return errorAt(d, fmt.Sprintf("unexpected \"{\" after \"%s\" directive", d.Name))
	}
	if len(d.Args) < minArgs || len(d.Args) > maxArgs {
		return errorAt(d, fmt.Sprintf("invalid number of arguments in \"%s\" directive", d.Name))
	}
	return nil
}

func errorAt(d *Directive, msg string) error {
	return &Error{File: d.File, Line: d.Line, Msg: msg}
}

// loadMail applies the mail block: its own directives are read first, so
// that every server inherits them wherever they stand in the block. Its
// servers log to main unless the block or they have error_log.
func loadMail(mail *Directive, opts Options, logs *logLoad, main *slog.Logger) (*mailproxy.Config, error) {
	base := &settings{seen: map[string]bool{}, resolvers: map[string]*resolver.Resolver{}, tlsLoad: newTLSLoad(opts), logs: logs, log: main}
	var servers []*Directive
	for _, d := range mail.Block {
		if d.Name == "server" {
			if !d.HasBlock || len(d.Args) != 0 {
				return nil, errorAt(d, "directive \"server\" has no opening \"{\"")
			}
			servers = append(servers, d)
			continue
		}
		if err := base.apply(d, atMail); err != nil {
			return nil, err
		}
	}
	cfg := &mailproxy.Config{ClientLimits: base.clientLimits}
	clients := map[authClient]*auth.HTTP{}
	err := base.openLogs()
	for i := 0; err == nil && i < len(servers); i++ {
		var sc mailproxy.ServerConfig
		sc, err = loadServer(base, servers[i], opts, clients)
		cfg.Servers = append(cfg.Servers, sc)
	}
	if err != nil {
		for _, r := range base.resolvers {
			r.Close()
		}
		return nil, err
	}
	for _, c := range clients {
		cfg.Resources = append(cfg.Resources, c)
	}
	for _, r := range base.resolvers {
		cfg.Resources = append(cfg.Resources, r)
	}
	return cfg, nil
}

// apply checks d against its spec and sets it.
func (s *settings) apply(d *Directive, at level) error {
	sp, ok := directives[d.Name]
	switch {
	case !ok:
		return errorAt(d, fmt.Sprintf("unknown directive \"%s\"", d.Name))
	case sp.where&at == 0:
		return errorAt(d, fmt.Sprintf("\"%s\" directive is not allowed here", d.Name))
	case d.HasBlock:
		return errorAt(d, fmt.Sprintf("unexpected \"{\" after \"%s\" directive", d.Name))
	case len(d.Args) < sp.min || sp.max >= 0 && len(d.Args) > sp.max:
		return errorAt(d, fmt.Sprintf("invalid number of arguments in \"%s\" directive", d.Name))
	case s.seen[d.Name] && !sp.multi:
		return errorAt(d, fmt.Sprintf("\"%s\" directive is duplicate", d.Name))
	}
	if err := sp.set(s, d); err != nil {
		return errorAt(d, fmt.Sprintf("%v in \"%s\" directive", err, d.Name))
	}
	s.seen[d.Name] = true
	return nil
}

func loadServer(base *settings, block *Directive, opts Options, clients map[authClient]*auth.HTTP) (mailproxy.ServerConfig, error) {
	s := *base
	s.seen = map[string]bool{}
	for _, d := range block.Block {
		if d.Name == "server" {
			return mailproxy.ServerConfig{}, errorAt(d, "\"server\" directive is not allowed here")
		}
		if err := s.apply(d, atServer); err != nil {
			return mailproxy.ServerConfig{}, err
		}
	}
	sc := mailproxy.ServerConfig{Name: block.Pos(), Listen: s.listen}
	if len(s.listen) == 0 {
		return sc, errorAt(block, "no \"listen\" is defined for server")
	}
	if err := s.detectProtocol(); err != nil {
		return sc, errorAt(block, err.Error())
	}
	if err := s.openLogs(); err != nil {
		return sc, err
	}
	authn, err := s.authenticator(opts, clients)
	if err != nil {
		return sc, errorAt(block, err.Error())
	}
	s.core.Auth = authn
	s.core.Metrics = opts.Metrics
	if err := s.useResolver(opts); err != nil {
		return sc, errorAt(block, err.Error())
	}
	if s.core.TLS, err = s.buildTLS(block); err != nil {
		return sc, err
	}
	s.core.Logger = s.log
	sc.Server = s.server()
	return sc, nil
}

// detectProtocol takes the protocol from the first listen on a well-known
// port when the protocol directive is absent.
func (s *settings) detectProtocol() error {
	if s.protocol != "" {
		return nil
	}
	for _, lc := range s.listen {
		if p := protocolForAddress(lc.Address); p != "" {
			s.protocol = p
			return nil
		}
	}
	return errors.New("protocol is not defined for server")
}

// authClient is what servers share an auth_http client by: its settings,
// and the logger its failures go to.
type authClient struct {
	authHTTP
	log *slog.Logger
}

// authenticator returns the Options' Authenticator, or the auth_http
// client for the server's settings, shared by servers with the same ones
// and the same error logs.
func (s *settings) authenticator(opts Options, clients map[authClient]*auth.HTTP) (auth.Authenticator, error) {
	if opts.Auth != nil {
		return opts.Auth, nil
	}
	if s.authHTTP.URL == "" {
		return nil, errors.New("no \"auth_http\" is defined for server")
	}
	key := authClient{s.authHTTP, s.log}
	if c, ok := clients[key]; ok {
		return c, nil
	}
	c := s.authHTTP.client(s.log)
	if err := c.Check(); err != nil { // an auth_http_header the HTTP client cannot send
		return nil, err
	}
	clients[key] = c
	return c, nil
}

// server builds the protocol handler.
func (s *settings) server() mailproxy.Server {
	switch s.protocol {
	case "imap":
		return &imap.Server{Config: s.core, Capabilities: s.imapCaps, AuthMethods: s.imapAuth, ClientBuffer: s.imapBuffer}
	case "pop3":
		return &pop3.Server{Config: s.core, Capabilities: s.pop3Caps, AuthMethods: s.pop3Auth}
	default:
		return &smtp.Server{Config: s.core, Capabilities: s.smtpCaps, AuthMethods: s.smtpAuth, ClientBuffer: s.smtpBuffer,
			GreetingDelay: s.smtpGreetingDelay, DisableXClient: s.noXClient, BackendAuth: s.smtpBackendAuth}
	}
}
