// Package config reads an nginx-style configuration into the option
// structs of mailproxy and its protocol packages.
//
// It is an adapter, as Caddy's Caddyfile adapter is: the root and protocol
// packages never see nginx syntax, and a program may build the same
// structs in Go instead. A whole nginx.conf loads: the mail block is
// applied, and every other top-level directive or block (events, http,
// stream, worker_processes, …) is accepted and skipped.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
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
	// Metrics, when set, counts what the servers Load builds do (their
	// session.Config.Metrics) and the lookups of the resolvers whose
	// status_zone names a zone. Give every Load of a program the same
	// one, so that the counts go on across reloads: a *metrics.Collector.
	Metrics Metrics
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
	// ErrorLog holds the arguments of the top-level error_log directive
	// (file, then an optional level), the path made absolute.
	ErrorLog []string
	// PID is the top-level pid file, made absolute; empty when not set.
	PID string
	// MetricsListen is the address of the mail block's metrics_listen
	// (ours): where a program serves the Prometheus metrics of
	// Options.Metrics. Empty when not set or off.
	MetricsListen string
}

// Close closes what Load created for the configuration (the auth_http
// clients' connections, the resolvers' queries), for a Config that no
// Proxy runs. A Proxy that
// runs Proxy closes them itself when it is done with it.
func (c *Config) Close() error { return c.Proxy.Close() }

// Load reads the configuration file at path.
func Load(path string, opts Options) (*Config, error) {
	top, err := ParseFile(path)
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
	var mail *Directive
	for _, d := range top {
		var err error
		switch d.Name {
		case "mail":
			mail, err = mailBlock(mail, d)
		case "error_log":
			if err = topLevel(d, 1, 2); err == nil {
				cfg.ErrorLog = slices.Clone(d.Args)
				if d.Args[0] != "stderr" {
					cfg.ErrorLog[0] = opts.path(d.Args[0])
				}
			}
		case "pid":
			if err = topLevel(d, 1, 1); err == nil {
				cfg.PID = opts.path(d.Args[0])
			}
		default:
			opts.Logger.Debug("skipped: not a mail directive", "directive", d.Name, "at", d.Pos())
		}
		if err != nil {
			return nil, err
		}
	}
	if mail == nil {
		return nil, fmt.Errorf("%s: no \"mail\" block", name)
	}
	proxy, err := loadMail(mail, opts)
	if err != nil {
		return nil, err
	}
	cfg.Proxy = proxy
	cfg.MetricsListen = metricsListen(mail)
	return cfg, nil
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
// that every server inherits them wherever they stand in the block.
func loadMail(mail *Directive, opts Options) (*mailproxy.Config, error) {
	base := &settings{seen: map[string]bool{}, resolvers: map[string]*resolver.Resolver{}, tlsLoad: newTLSLoad(opts)}
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
	warnPending(opts.Logger, base.pending)
	cfg := &mailproxy.Config{}
	clients := map[authHTTP]*auth.HTTP{}
	for _, d := range servers {
		sc, err := loadServer(base, d, opts, clients)
		if err != nil {
			for _, r := range base.resolvers {
				r.Close()
			}
			return nil, err
		}
		cfg.Servers = append(cfg.Servers, sc)
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

func warnPending(log *slog.Logger, pending []*Directive) {
	for _, d := range pending {
		log.Warn("directive accepted but not in effect yet", "directive", d.Name, "at", d.Pos())
	}
}

func loadServer(base *settings, block *Directive, opts Options, clients map[authHTTP]*auth.HTTP) (mailproxy.ServerConfig, error) {
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
	warnPending(opts.Logger, ownPending(base.pending, s.pending))
	sc := mailproxy.ServerConfig{Name: block.Pos(), Listen: s.listen}
	if len(s.listen) == 0 {
		return sc, errorAt(block, "no \"listen\" is defined for server")
	}
	if err := s.detectProtocol(); err != nil {
		return sc, errorAt(block, err.Error())
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
	s.core.Logger = opts.Logger.With("proto", s.protocol, "server", block.Pos())
	sc.Server = s.server()
	return sc, nil
}

// ownPending returns the pending directives a server block added itself,
// which were not warned about with the mail block's.
func ownPending(inherited, all []*Directive) []*Directive {
	var own []*Directive
	for _, d := range all {
		if !slices.Contains(inherited, d) {
			own = append(own, d)
		}
	}
	return own
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

// authenticator returns the Options' Authenticator, or the auth_http
// client for the server's settings, shared by servers with the same ones.
func (s *settings) authenticator(opts Options, clients map[authHTTP]*auth.HTTP) (auth.Authenticator, error) {
	if opts.Auth != nil {
		return opts.Auth, nil
	}
	if s.authHTTP.URL == "" {
		return nil, errors.New("no \"auth_http\" is defined for server")
	}
	if c, ok := clients[s.authHTTP]; ok {
		return c, nil
	}
	c := s.authHTTP.client(opts.Logger)
	clients[s.authHTTP] = c
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
