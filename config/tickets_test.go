package config

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

// resumes connects twice with one client session cache and reports
// whether the second connection resumed the first one's session. The
// clock, when set, moves by wait between the two.
func resumes(t *testing.T, first, second *tls.Config, version uint16, clock *testutil.Clock, wait time.Duration) bool {
	t.Helper()
	client := clientConfig(t)
	client.MaxVersion = version
	client.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	st, err := dialTLS(t, serveTLS(t, first), client)
	if err != nil {
		t.Fatal(err)
	}
	if st.DidResume {
		t.Fatal("the first connection resumed")
	}
	if clock != nil {
		clock.Advance(wait)
	}
	st, err = dialTLS(t, serveTLS(t, second), client)
	if err != nil {
		t.Fatal(err)
	}
	return st.DidResume
}

func TestSessionResumption(t *testing.T) {
	dir := tlsDir(t)
	tests := []struct {
		name    string
		body    string
		wait    time.Duration // on the server's clock, between the connections
		resumed bool
	}{
		{"tickets by default", "", 0, true},
		{"tickets within the timeout", "ssl_session_timeout 10m;", 9 * time.Minute, true},
		{"tickets after the timeout", "ssl_session_timeout 10m;", 11 * time.Minute, false},
		{"tickets after the default timeout", "", 6 * time.Minute, false},
		{"tickets with key files", "ssl_session_ticket_key tk80; ssl_session_ticket_key tk48;", 0, true},
		{"tickets on beat the cache", "ssl_session_cache builtin:10;", 0, true},
		{"builtin cache", "ssl_session_tickets off; ssl_session_cache builtin:10;", 0, true},
		{"shared cache", "ssl_session_tickets off; ssl_session_cache shared:S:1m;", 0, true},
		{"cache after the timeout", "ssl_session_tickets off; ssl_session_cache shared:S:1m; ssl_session_timeout 1m;", 2 * time.Minute, false},
		{"tickets off, no cache", "ssl_session_tickets off;", 0, false},
		{"tickets off, cache off", "ssl_session_tickets off; ssl_session_cache off;", 0, false},
		{"tickets off, cache none", "ssl_session_tickets off; ssl_session_cache none shared:S:1m;", 0, false},
		{"tickets off by ssl_conf_command", "ssl_conf_command Options -SessionTicket;", 0, false},
		{"timeout 0", "ssl_session_timeout 0;", time.Second, false},
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tt := range tests {
			t.Run(tls.VersionName(version)+"/"+tt.name, func(t *testing.T) {
				cfg := mustTLS(t, dir, pair+tt.body+"\nserver { listen 993 ssl; }")[0].Config
				clock := testutil.NewClock(time.Now())
				cfg.Time = clock.Now
				if got := resumes(t, cfg, cfg, version, clock, tt.wait); got != tt.resumed {
					t.Errorf("resumed %v, want %v", got, tt.resumed)
				}
			})
		}
	}
}

// Of the ssl_session_ticket_key files, the first encrypts new tickets and
// all decrypt: a ticket made under key A is taken by a server with keys
// [B, A] and refused by one with [B] alone. Servers without key files
// each have keys of their own.
func TestTicketKeyRotation(t *testing.T) {
	dir := tlsDir(t)
	ts := mustTLS(t, dir, pair+`
		server { listen 993 ssl; ssl_session_ticket_key tk80; }
		server { listen 995 ssl; ssl_session_ticket_key tk80b; ssl_session_ticket_key tk80; }
		server { listen 465 ssl; ssl_session_ticket_key tk80b; }
		server { listen 587 ssl; }
		server { listen 25 ssl; }`)
	a, ba, b, own1, own2 := ts[0].Config, ts[1].Config, ts[2].Config, ts[3].Config, ts[4].Config
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			if !resumes(t, a, ba, version, nil, 0) {
				t.Error("a ticket of key A is refused by [B, A]")
			}
			if resumes(t, a, b, version, nil, 0) {
				t.Error("a ticket of key A is taken by [B]")
			}
			if !resumes(t, ba, b, version, nil, 0) {
				t.Error("[B, A] does not encrypt with B")
			}
			if resumes(t, own1, own2, version, nil, 0) {
				t.Error("servers without key files share their keys")
			}
		})
	}
}

// Servers that name the same shared zone share its sessions; a builtin
// cache is a server's own.
func TestSharedSessionCache(t *testing.T) {
	dir := tlsDir(t)
	ts := mustTLS(t, dir, pair+`ssl_session_tickets off;
		server { listen 993 ssl; ssl_session_cache shared:MAIL:1m; }
		server { listen 995 ssl; ssl_session_cache shared:MAIL:1m; }
		server { listen 465 ssl; ssl_session_cache shared:OTHER:1m; }
		server { listen 587 ssl; ssl_session_cache builtin:100; }
		server { listen 25 ssl; ssl_session_cache builtin:100; }`)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			if !resumes(t, ts[0].Config, ts[1].Config, version, nil, 0) {
				t.Error("servers of one zone do not share it")
			}
			if resumes(t, ts[0].Config, ts[2].Config, version, nil, 0) {
				t.Error("another zone has the session")
			}
			if resumes(t, ts[3].Config, ts[4].Config, version, nil, 0) {
				t.Error("builtin caches are shared")
			}
		})
	}
}

// A shared zone holds as many sessions as nginx says it does.
func TestSessionCacheSize(t *testing.T) {
	var spec sessionCacheSpec
	if err := parseSessionCache(&spec, &Directive{Name: "ssl_session_cache", Args: []string{"shared:SSL:10m"}}); err != nil {
		t.Fatal(err)
	}
	if n := spec.size / sharedBytesPerSession; n < 39000 || n > 41000 {
		t.Errorf("10m holds %d sessions; nginx says about 40000", n)
	}
}

// The openssl command resumes a session with -sess_out then -sess_in,
// through a Proxy's implicit TLS listener.
func TestOpenSSLResumption(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	dir := tlsDir(t)
	for _, tt := range []struct{ name, body, version string }{
		{"tickets TLS 1.2", "", "-tls1_2"},
		{"tickets TLS 1.3", "", "-tls1_3"},
		{"cache TLS 1.2", "ssl_session_tickets off; ssl_session_cache shared:S:1m;", "-tls1_2"},
		{"cache TLS 1.3", "ssl_session_tickets off; ssl_session_cache shared:S:1m;", "-tls1_3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, dir, "mail {\n"+pair+tt.body+"\nserver { listen 127.0.0.1:0 ssl; protocol imap; }\n}")
			addr := p.ServerAddrs(0)[0].String()
			sess := filepath.Join(t.TempDir(), "session.pem")
			run := func(args ...string) string {
				cmd := exec.Command("openssl", append([]string{"s_client", "-connect", addr, "-servername", "localhost",
					"-CAfile", filepath.Join(dir, "ca.crt"), tt.version}, args...)...)
				cmd.Stdin = strings.NewReader("")
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("openssl s_client: %v\n%s", err, out)
				}
				return string(out)
			}
			if out := run("-sess_out", sess); !strings.Contains(out, "\nNew, ") {
				t.Fatalf("first connection:\n%s", out)
			}
			if _, err := os.Stat(sess); err != nil {
				t.Fatalf("no session saved: %v", err)
			}
			if out := run("-sess_in", sess); !strings.Contains(out, "\nReused, ") {
				t.Errorf("second connection not reused:\n%s", out)
			}
		})
	}
}
