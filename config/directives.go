package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/resolver"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/session"
)

// level says where a directive may stand.
type level uint8

const (
	atMail level = 1 << iota
	atServer
	anywhere = atMail | atServer
)

// spec describes one directive of the mail block.
type spec struct {
	where    level
	min, max int  // argument count; max < 0 means any
	multi    bool // may appear more than once in a block
	set      func(s *settings, d *Directive) error
}

// settings are the directives in force for one server block: the mail
// block's, overridden by the server's own.
type settings struct {
	core     session.Config
	protocol string
	listen   []mailproxy.ListenConfig

	imapCaps, imapAuth []string
	imapBuffer         int
	pop3Caps, pop3Auth []string
	smtpCaps, smtpAuth []string
	smtpBuffer         int
	smtpGreetingDelay  time.Duration
	noXClient          bool // xclient off
	smtpBackendAuth    bool // proxy_smtp_auth on

	// clientLimits holds the limits on each client address (limits.go).
	clientLimits mailproxy.ClientLimits

	// authHTTP holds the auth_http settings; its URL is empty without
	// auth_http.
	authHTTP authHTTP
	resolver resolverSettings
	// ssl holds starttls and the ssl_* directives (ssl.go).
	ssl sslSettings
	// tlsLoad holds what the servers' TLS settings share in this Load
	// (the same in each copy of the settings).
	tlsLoad *tlsLoad
	// resolvers holds the Resolvers made so far in this Load, shared by
	// every server (the map is the same in each copy of the settings).
	resolvers map[string]*resolver.Resolver
	// errorLogs are the error_log directives in force, and log the
	// logger that writes to them (the enclosing block's until openLogs).
	errorLogs []logSpec
	log       *slog.Logger
	// logs opens the error logs of this Load (the same in each copy of
	// the settings).
	logs *logLoad
	// seen holds the directives set in the block being read, to find
	// duplicates and to let the first of a repeatable directive replace
	// what was inherited.
	seen map[string]bool
}

// directives maps the name of every directive of the mail block to its spec.
var directives map[string]spec

func init() {
	directives = map[string]spec{
		"listen":       {where: atServer, min: 1, max: -1, multi: true, set: setListen},
		"protocol":     {where: atServer, min: 1, max: 1, set: setProtocol},
		"server_name":  {where: anywhere, min: 1, max: 1, set: str(func(s *settings) *string { return &s.core.ServerName })},
		"timeout":      {where: anywhere, min: 1, max: 1, set: duration(func(s *settings) *time.Duration { return &s.core.Timeout })},
		"max_errors":   {where: anywhere, min: 1, max: 1, set: count(func(s *settings) *int { return &s.core.MaxErrors })},
		"max_commands": {where: anywhere, min: 1, max: 1, set: count(func(s *settings) *int { return &s.core.MaxCommands })},

		"max_connections_per_client":    {where: atMail, min: 1, max: 1, set: setMaxConnectionsPerClient},
		"max_login_failures_per_client": {where: atMail, min: 1, max: 2, set: setMaxLoginFailuresPerClient},

		"proxy":                    {where: anywhere, min: 1, max: 1, set: setProxy},
		"proxy_timeout":            {where: anywhere, min: 1, max: 1, set: duration(func(s *settings) *time.Duration { return &s.core.ProxyTimeout })},
		"proxy_buffer":             {where: anywhere, min: 1, max: 1, set: size(func(s *settings) *int { return &s.core.ProxyBuffer })},
		"proxy_pass_error_message": {where: anywhere, min: 1, max: 1, set: flag(func(s *settings) *bool { return &s.core.PassErrorMessage })},
		"proxy_protocol":           {where: anywhere, min: 1, max: 1, set: setProxyProtocol},
		"set_real_ip_from":         {where: atServer, min: 1, max: 1, multi: true, set: setRealIPFrom},
		"resolver":                 {where: anywhere, min: 1, max: -1, set: setResolver},
		"resolver_timeout":         {where: anywhere, min: 1, max: 1, set: setResolverTimeout},
		"metrics_listen":           {where: atMail, min: 1, max: 1, set: checkMetricsListen},

		"imap_capabilities":   {where: anywhere, min: 1, max: -1, set: words(func(s *settings) *[]string { return &s.imapCaps })},
		"imap_auth":           {where: anywhere, min: 1, max: -1, set: methods(func(s *settings) *[]string { return &s.imapAuth }, "login", "plain", "cram-md5", "external")},
		"imap_client_buffer":  {where: anywhere, min: 1, max: 1, set: size(func(s *settings) *int { return &s.imapBuffer })},
		"pop3_capabilities":   {where: anywhere, min: 1, max: -1, set: words(func(s *settings) *[]string { return &s.pop3Caps })},
		"pop3_auth":           {where: anywhere, min: 1, max: -1, set: methods(func(s *settings) *[]string { return &s.pop3Auth }, "plain", "apop", "cram-md5", "external")},
		"smtp_capabilities":   {where: anywhere, min: 1, max: -1, set: words(func(s *settings) *[]string { return &s.smtpCaps })},
		"smtp_auth":           {where: anywhere, min: 1, max: -1, set: methods(func(s *settings) *[]string { return &s.smtpAuth }, "login", "plain", "cram-md5", "external", "none")},
		"smtp_client_buffer":  {where: anywhere, min: 1, max: 1, set: size(func(s *settings) *int { return &s.smtpBuffer })},
		"smtp_greeting_delay": {where: anywhere, min: 1, max: 1, set: duration(func(s *settings) *time.Duration { return &s.smtpGreetingDelay })},
		"xclient":             {where: anywhere, min: 1, max: 1, set: setXClient},
		"proxy_smtp_auth":     {where: anywhere, min: 1, max: 1, set: flag(func(s *settings) *bool { return &s.smtpBackendAuth })},

		"error_log": {where: anywhere, min: 1, max: 2, multi: true, set: setErrorLog},

		"auth_http":                  {where: anywhere, min: 1, max: 1, set: setAuthHTTP},
		"auth_http_header":           {where: anywhere, min: 2, max: 2, multi: true, set: setAuthHTTPHeader},
		"auth_http_timeout":          {where: anywhere, min: 1, max: 1, set: duration(func(s *settings) *time.Duration { return &s.authHTTP.Timeout })},
		"auth_http_pass_client_cert": {where: anywhere, min: 1, max: 1, set: flag(func(s *settings) *bool { return &s.authHTTP.PassClientCert })},
	}
	addSSL()
}

// authHTTP is the part of auth.HTTP the directives set, comparable so
// that servers with the same settings share one client and its pool.
type authHTTP struct {
	URL            string
	Header         string // auth_http_header lines, "name: value\n" each
	Timeout        time.Duration
	PassClientCert bool
}

func setAuthHTTP(s *settings, d *Directive) error {
	h := &auth.HTTP{URL: d.Args[0]}
	if err := h.Check(); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), fmt.Sprintf("auth_http %q: ", d.Args[0])))
	}
	s.authHTTP.URL = d.Args[0]
	return nil
}

// setAuthHTTPHeader adds a header; the first in a block replaces the
// inherited ones.
func setAuthHTTPHeader(s *settings, d *Directive) error {
	if !s.seen[d.Name] {
		s.authHTTP.Header = ""
	}
	if strings.ContainsAny(d.Args[0]+d.Args[1], "\r\n") || strings.ContainsAny(d.Args[0], ": ") {
		return fmt.Errorf("invalid header %q", d.Args[0])
	}
	s.authHTTP.Header += d.Args[0] + ": " + d.Args[1] + "\n"
	return nil
}

// client returns the auth.HTTP for these settings.
func (a authHTTP) client(log *slog.Logger) *auth.HTTP {
	h := &auth.HTTP{URL: a.URL, Timeout: a.Timeout, PassClientCert: a.PassClientCert, Logger: log}
	for _, line := range strings.Split(strings.TrimSuffix(a.Header, "\n"), "\n") {
		if name, value, ok := strings.Cut(line, ": "); ok {
			h.Header = append(h.Header, [2]string{name, value})
		}
	}
	return h
}

// setProxy reads "proxy on|off", a flag nginx accepts (Debian's stock
// nginx.conf shows it in its mail example) and ignores: every session is
// proxied. It is checked as nginx checks it, and named in a warning.
func setProxy(s *settings, d *Directive) error {
	if _, err := parseFlag(d.Args[0]); err != nil {
		return err
	}
	s.tlsLoad.warn(d, "changes nothing: sessions are always proxied (nginx ignores the directive too)")
	return nil
}

// setProxyProtocol reads "proxy_protocol on|off": a version 1 header to the
// backend.
func setProxyProtocol(s *settings, d *Directive) error {
	on, err := parseFlag(d.Args[0])
	s.core.SendProxyProtocol = 0
	if on {
		s.core.SendProxyProtocol = 1
	}
	return err
}

// setRealIPFrom reads "set_real_ip_from address|CIDR|unix:".
func setRealIPFrom(s *settings, d *Directive) error {
	v := d.Args[0]
	if v == "unix:" {
		s.core.RealIP.Unix = true
		return nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil {
			return fmt.Errorf("invalid address %q", v)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	s.core.RealIP.From = append(s.core.RealIP.From, p.Masked())
	return nil
}

// setXClient reads "xclient on|off"; on is the default.
func setXClient(s *settings, d *Directive) error {
	on, err := parseFlag(d.Args[0])
	s.noXClient = !on
	return err
}

func setListen(s *settings, d *Directive) error {
	lc, err := parseListen(d.Args)
	if err != nil {
		return err
	}
	s.listen = append(s.listen, lc)
	return nil
}

func setProtocol(s *settings, d *Directive) error {
	if err := oneOf("imap", "pop3", "smtp")(d.Args[0]); err != nil {
		return fmt.Errorf("unknown protocol %q", d.Args[0])
	}
	s.protocol = d.Args[0]
	return nil
}

// The setters below make a spec's set function from a pointer to the field
// it fills.

func str(field func(*settings) *string) func(*settings, *Directive) error {
	return func(s *settings, d *Directive) error { *field(s) = d.Args[0]; return nil }
}

func words(field func(*settings) *[]string) func(*settings, *Directive) error {
	return func(s *settings, d *Directive) error { *field(s) = slices.Clone(d.Args); return nil }
}

func duration(field func(*settings) *time.Duration) func(*settings, *Directive) error {
	return func(s *settings, d *Directive) error {
		v, err := parseTime(d.Args[0])
		*field(s) = v
		return err
	}
}

func size(field func(*settings) *int) func(*settings, *Directive) error {
	return func(s *settings, d *Directive) error {
		v, err := parseSize(d.Args[0])
		if err == nil && v == 0 {
			err = fmt.Errorf("invalid size %q", d.Args[0])
		}
		*field(s) = v
		return err
	}
}

// count sets a limit. nginx closes at the first error with max_errors 0,
// which is our limit of 1; our 0 would mean the default.
func count(field func(*settings) *int) func(*settings, *Directive) error {
	return func(s *settings, d *Directive) error {
		v, err := parseCount(d.Args[0])
		*field(s) = max(v, 1)
		return err
	}
}

func parseCount(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", v)
	}
	return int(n), nil
}

func flag(field func(*settings) *bool) func(*settings, *Directive) error {
	return func(s *settings, d *Directive) error {
		v, err := parseFlag(d.Args[0])
		*field(s) = v
		return err
	}
}

func methods(field func(*settings) *[]string, allowed ...string) func(*settings, *Directive) error {
	return func(s *settings, d *Directive) error {
		if err := checkEach(oneOf(allowed...))(d.Args); err != nil {
			return err
		}
		*field(s) = slices.Clone(d.Args)
		return nil
	}
}

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("invalid value %q", v)
		}
		return nil
	}
}

func checkEach(check func(string) error) func([]string) error {
	return func(args []string) error {
		for _, a := range args {
			if err := check(a); err != nil {
				return err
			}
		}
		return nil
	}
}
