package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/resolver"
)

// resolver and resolver_timeout give SMTP servers a Resolver, shared by
// servers with the same settings; IMAP and POP3 servers look up nothing,
// as in nginx; "resolver off" cancels an inherited one.
func TestResolverDirectives(t *testing.T) {
	servers := mustServers(t, `
		resolver 127.0.0.1 [::1]:5353 valid=30s ipv6=off;
		resolver_timeout 5s;
		server { listen 127.0.0.1:2525; protocol smtp; }
		server { listen 127.0.0.1:2526; protocol smtp; }
		server { listen 127.0.0.1:2527; protocol smtp; resolver_timeout 1s; }
		server { listen 127.0.0.1:2528; protocol smtp; resolver off; }
		server { listen 127.0.0.1:1143; protocol imap; }
	`)
	var got []*resolver.Resolver
	for _, sc := range servers {
		r, _ := coreOf(sc.Server).Resolver.(*resolver.Resolver)
		got = append(got, r)
	}
	switch {
	case got[0] == nil || got[0] != got[1]:
		t.Errorf("servers with the same settings: %p %p, want one shared Resolver", got[0], got[1])
	case got[2] == nil || got[2] == got[0]:
		t.Errorf("another resolver_timeout: %p, want a Resolver of its own", got[2])
	case got[3] != nil:
		t.Error("resolver off: a Resolver is set")
	case got[4] != nil:
		t.Error("IMAP server has a Resolver")
	}
}

func TestResolverErrors(t *testing.T) {
	tests := []struct{ conf, want string }{
		{"resolver valid=30s;", "no name servers"},
		{"resolver 127.0.0.1 valid=forever;", `invalid parameter "valid=forever"`},
		{"resolver 127.0.0.1 ipv4=maybe;", `invalid parameter "ipv4=maybe"`},
		{"resolver 127.0.0.1 ipv4=off ipv6=off;", `"ipv4" and "ipv6" cannot both be "off"`},
		{"resolver 127.0.0.1; resolver 127.0.0.2;", `"resolver" directive is duplicate`},
		{"resolver_timeout soon;", "resolver_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.conf, func(t *testing.T) {
			_, err := loadString(t, "mail { auth_http 127.0.0.1:9000/auth; "+tt.conf+" server { listen 127.0.0.1:2525; protocol smtp; } }")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// The resolvers a Load makes are among the Resources that the loaded
// configuration closes: a closed resolver asks no name server.
func TestResolversAreClosedWithTheConfiguration(t *testing.T) {
	ns := testutil.StartDNS(t, "1.2.0.192.in-addr.arpa. 60 IN PTR client.test.", "client.test. 60 IN A 192.0.2.1")
	cfg, err := loadString(t, `mail { auth_http 127.0.0.1:9000/auth; resolver `+ns+` valid=30s;
		server { listen 127.0.0.1:2525; protocol smtp; }
		server { listen 127.0.0.1:2526; protocol smtp; resolver_timeout 1s; } }`)
	if err != nil {
		t.Fatal(err)
	}
	var resolvers []*resolver.Resolver
	for _, r := range cfg.Proxy.Resources {
		if r, ok := r.(*resolver.Resolver); ok {
			resolvers = append(resolvers, r)
		}
	}
	if len(resolvers) != 2 || len(withoutLogs(cfg.Proxy.Resources)) != 3 {
		t.Fatalf("Resources %v, want the auth_http client and two resolvers", cfg.Proxy.Resources)
	}
	client := netip.MustParseAddr("192.0.2.1")
	if name, err := resolvers[0].LookupHost(t.Context(), client); name != "client.test" || err != nil {
		t.Fatalf("lookup before Close: %q, %v", name, err)
	}
	if err := cfg.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range resolvers {
		if _, err := r.LookupHost(t.Context(), netip.MustParseAddr("192.0.2.2")); !errors.Is(err, resolver.ErrTemporary) {
			t.Errorf("lookup after Close: %v, want ErrTemporary", err)
		}
	}
}
