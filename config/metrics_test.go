package config

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/resolver"
	"github.com/mailproxy/mailproxy/session"
)

// fakeMetrics is a Metrics that counts the lookups of each zone.
type fakeMetrics struct{ zones map[string]*zoneCount }

func (f *fakeMetrics) Listener(string, string) session.ListenerMetrics { return nil }

func (f *fakeMetrics) Resolver(zone string) resolver.Metrics {
	if f.zones[zone] == nil {
		f.zones[zone] = &zoneCount{}
	}
	return f.zones[zone]
}

type zoneCount struct{ lookups atomic.Int32 }

func (z *zoneCount) Lookup(resolver.QueryKind, resolver.Response) { z.lookups.Add(1) }
func (z *zoneCount) Exchange(time.Duration)                       {}

// Options.Metrics counts for every server, and for the resolvers of each
// status_zone; resolvers of different zones are not shared.
func TestMetricsOption(t *testing.T) {
	ns := testutil.StartDNS(t, "1.2.0.192.in-addr.arpa. 60 IN PTR client.test.", "client.test. 60 IN A 192.0.2.1")
	m := &fakeMetrics{zones: map[string]*zoneCount{}}
	src := `mail { auth_http 127.0.0.1:9000/auth; resolver ` + ns + ` status_zone=one;
		server { listen 127.0.0.1:2525; protocol smtp; }
		server { listen 127.0.0.1:2526; protocol smtp; resolver ` + ns + ` status_zone=two; }
		server { listen 127.0.0.1:2527; protocol smtp; resolver ` + ns + `; }
		server { listen 127.0.0.1:1143; protocol imap; } }`
	cfg, err := LoadBytes("m.conf", []byte(src), t.TempDir(), Options{Logger: quiet(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	var resolvers []*resolver.Resolver
	for i, sc := range cfg.Proxy.Servers {
		core := coreOf(sc.Server)
		if core.Metrics != m {
			t.Errorf("server %d: Metrics %v, want the Options'", i, core.Metrics)
		}
		r, _ := core.Resolver.(*resolver.Resolver)
		resolvers = append(resolvers, r)
	}
	if resolvers[0] == resolvers[1] || resolvers[0] == resolvers[2] {
		t.Fatal("resolvers of other zones are shared")
	}
	for _, r := range resolvers[:3] {
		r.LookupHost(t.Context(), netip.MustParseAddr("192.0.2.1"))
	}
	if len(m.zones) != 2 || m.zones["one"].lookups.Load() != 2 || m.zones["two"].lookups.Load() != 2 {
		t.Errorf("zones %v, want one and two with a PTR and an A each", m.zones)
	}
}

// A status_zone with no Options.Metrics is named in a warning.
func TestStatusZoneWithoutMetrics(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src := "mail {\nauth_http 127.0.0.1:9000/auth;\nserver { listen 127.0.0.1:2525; protocol smtp;\nresolver 127.0.0.1 status_zone=dns; }\n}"
	cfg, err := LoadBytes("z.conf", []byte(src), t.TempDir(), Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Close()
	if !strings.Contains(logs.String(), "the program keeps no metrics\" zone=dns at=z.conf:4") {
		t.Errorf("no warning about the zone:\n%s", logs.String())
	}
}

// metrics_listen (ours) names the address of the metrics, in the mail
// block only.
func TestMetricsListen(t *testing.T) {
	tests := []struct{ directive, want, err string }{
		{"", "", ""},
		{"metrics_listen 127.0.0.1:9145;", "127.0.0.1:9145", ""},
		{"metrics_listen [::1]:9145;", "[::1]:9145", ""},
		{"metrics_listen 9145;", ":9145", ""},
		{"metrics_listen off;", "", ""},
		{"metrics_listen localhost;", "", `invalid address "localhost" in "metrics_listen" directive`},
		{"metrics_listen 127.0.0.1:0;", "", `invalid port in "127.0.0.1:0" in "metrics_listen" directive`},
		{"metrics_listen 1:2; metrics_listen 1:3;", "", `"metrics_listen" directive is duplicate`},
		{"metrics_listen;", "", `invalid number of arguments in "metrics_listen" directive`},
	}
	for _, tt := range tests {
		t.Run(tt.directive, func(t *testing.T) {
			cfg, err := loadString(t, "mail { auth_http 127.0.0.1:9000/auth; "+tt.directive+" server { listen 127.0.0.1:1143; protocol imap; } }")
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			case cfg.MetricsListen != tt.want:
				t.Errorf("MetricsListen = %q, want %q", cfg.MetricsListen, tt.want)
			}
		})
	}
	_, err := loadString(t, "mail { auth_http 127.0.0.1:9000/auth; server { listen 127.0.0.1:1143; protocol imap; metrics_listen 9145; } }")
	if err == nil || !strings.Contains(err.Error(), `"metrics_listen" directive is not allowed here`) {
		t.Errorf("in a server: %v", err)
	}
}
