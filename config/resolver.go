package config

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailproxy/mailproxy/resolver"
)

// resolverSettings are the resolver and resolver_timeout directives of a
// server. Servers with equal settings share one Resolver, and with it its
// cache.
type resolverSettings struct {
	cfg  resolver.Config // Servers empty: resolver off
	zone string          // status_zone: the zone its metrics are counted in
	at   string          // where the directive is, for messages
}

// setResolver reads "resolver address ... [valid=time] [ipv4=on|off]
// [ipv6=on|off] [status_zone=zone]" or "resolver off".
func setResolver(s *settings, d *Directive) error {
	timeout := s.resolver.cfg.Timeout
	s.resolver = resolverSettings{cfg: resolver.Config{Timeout: timeout}, at: d.Pos()}
	if len(d.Args) == 1 && d.Args[0] == "off" {
		return nil
	}
	for _, arg := range d.Args {
		if err := s.resolver.parse(arg, d); err != nil {
			return err
		}
	}
	if len(s.resolver.cfg.Servers) == 0 {
		return errors.New("no name servers")
	}
	if s.resolver.cfg.NoIPv4 && s.resolver.cfg.NoIPv6 {
		return errors.New("\"ipv4\" and \"ipv6\" cannot both be \"off\"")
	}
	return nil
}

func (r *resolverSettings) parse(arg string, d *Directive) error {
	name, value, isParam := strings.Cut(arg, "=")
	var err error
	switch {
	case !isParam:
		r.cfg.Servers = append(r.cfg.Servers, arg)
	case name == "valid":
		r.cfg.Valid, err = parseTime(value)
	case name == "ipv4" || name == "ipv6":
		var on bool
		if on, err = parseFlag(value); name == "ipv4" {
			r.cfg.NoIPv4 = !on
		} else {
			r.cfg.NoIPv6 = !on
		}
	case name == "status_zone" && value != "":
		r.zone = value
	default:
		r.cfg.Servers = append(r.cfg.Servers, arg) // an IPv6 address never has "="
	}
	if err != nil {
		return fmt.Errorf("invalid parameter %q", arg)
	}
	return nil
}

func setResolverTimeout(s *settings, d *Directive) error {
	t, err := parseTime(d.Args[0])
	s.resolver.cfg.Timeout = t
	return err
}

// on reports whether a resolver is configured.
func (r *resolverSettings) on() bool { return len(r.cfg.Servers) > 0 }

// build returns the Resolver for these settings, shared with the servers
// of the same Load that have the same ones.
// A status_zone counts its lookups in m.
func (r *resolverSettings) build(shared map[string]*resolver.Resolver, m Metrics) (*resolver.Resolver, error) {
	key := fmt.Sprintf("%q %v %v %v %v %q", r.cfg.Servers, r.cfg.Valid, r.cfg.NoIPv4, r.cfg.NoIPv6, r.cfg.Timeout, r.zone)
	if res, ok := shared[key]; ok {
		return res, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := r.cfg
	if r.zone != "" && m != nil {
		cfg.Metrics = m.Resolver(r.zone)
	}
	res, err := resolver.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	shared[key] = res
	return res, nil
}

// useResolver gives an SMTP server its Resolver. As in nginx, only SMTP
// looks up client names (for Client-Host and XCLIENT NAME); a program may
// set session.Config.Resolver for the other protocols. A status_zone
// without opts.Metrics is named in a warning: nothing counts its lookups.
func (s *settings) useResolver(opts Options) error {
	if s.resolver.zone != "" && opts.Metrics == nil {
		opts.Logger.Warn("status_zone of \"resolver\" counts nothing: the program keeps no metrics", "zone", s.resolver.zone, "at", s.resolver.at)
	}
	if s.protocol != "smtp" || !s.resolver.on() {
		return nil
	}
	res, err := s.resolver.build(s.resolvers, opts.Metrics)
	if err != nil {
		return err
	}
	s.core.Resolver = res
	return nil
}
