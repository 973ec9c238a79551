package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// parseServers turns the addresses of the directive into IP addresses and
// ports, resolving host names with the system resolver.
func parseServers(ctx context.Context, list []string) ([]netip.AddrPort, error) {
	var servers []netip.AddrPort
	for _, s := range list {
		addrs, err := parseServer(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("resolver: name server %q: %w", s, err)
		}
		servers = append(servers, addrs...)
	}
	if len(servers) == 0 {
		return nil, errors.New("resolver: no name servers")
	}
	return servers, nil
}

// parseServer reads one "host", "host:port", "[v6]" or "[v6]:port".
func parseServer(ctx context.Context, s string) ([]netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(s); err == nil { // a bare IPv6 address too
		return []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), 53)}, nil
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), port)}, nil
	}
	if host == "" || strings.ContainsAny(host, "[]:") {
		return nil, errors.New("invalid address")
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	servers := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		servers = append(servers, netip.AddrPortFrom(ip.Unmap(), port))
	}
	return servers, nil
}

// splitHostPort splits s at its port, 53 when there is none.
func splitHostPort(s string) (string, uint16, error) {
	host, portText, err := net.SplitHostPort(s)
	if err != nil { // no port: "ns.example" or "[::1]"
		if inner, ok := strings.CutPrefix(s, "["); ok {
			if s, ok = strings.CutSuffix(inner, "]"); !ok {
				return "", 0, errors.New("missing ']'")
			}
		}
		return s, 53, nil
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("invalid port %q", portText)
	}
	return host, uint16(port), nil
}
