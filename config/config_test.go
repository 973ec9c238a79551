package config

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// quietLogs are Outputs whose standard error is discarded: the main log
// of a configuration without error_log.
func quietLogs() *errorlog.Outputs { return &errorlog.Outputs{Stderr: io.Discard} }

func loadString(t *testing.T, src string) (*Config, error) {
	t.Helper()
	return LoadBytes("test.conf", []byte(src), t.TempDir(), Options{Logger: quiet(), Outputs: quietLogs()})
}

// withoutLogs returns the Resources that are not error logs.
func withoutLogs(rs []io.Closer) []io.Closer {
	return slices.DeleteFunc(slices.Clone(rs), func(r io.Closer) bool {
		_, ok := r.(*errorlog.Output)
		return ok
	})
}

// mustServers loads a mail block body and returns its servers.
func mustServers(t *testing.T, body string) []mailproxy.ServerConfig {
	t.Helper()
	cfg, err := loadString(t, "mail {\nauth_http 127.0.0.1:9000/auth;\n"+body+"\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Proxy.Servers
}

func coreOf(s mailproxy.Server) session.Config {
	switch s := s.(type) {
	case *imap.Server:
		return s.Config
	case *pop3.Server:
		return s.Config
	case *smtp.Server:
		return s.Config
	}
	panic("unknown server type")
}

func TestLoadFullNginxConf(t *testing.T) {
	// -e stderr: a test writes nothing to /var/log/nginx.
	cfg, err := Load("testdata/nginx-full.conf", Options{Logger: quiet(), ErrorLog: "stderr", Outputs: quietLogs()})
	if err != nil {
		t.Fatal(err)
	}
	servers := cfg.Proxy.Servers
	if len(servers) != 5 {
		t.Fatalf("%d servers, want 5", len(servers))
	}
	im, ok := servers[0].Server.(*imap.Server)
	if !ok {
		t.Fatalf("first server is %T", servers[0].Server)
	}
	if want := []string{"IMAP4rev1", "UIDPLUS", "IDLE", "LITERAL+", "QUOTA"}; !reflect.DeepEqual(im.Capabilities, want) {
		t.Errorf("imap capabilities %q", im.Capabilities)
	}
	if !reflect.DeepEqual(im.AuthMethods, []string{"plain", "login"}) {
		t.Errorf("imap_auth %q", im.AuthMethods)
	}
	if im.Config.ServerName != "mail.example.org" || !im.Config.PassErrorMessage {
		t.Errorf("inherited settings not applied: %+v", im.Config)
	}
	for _, s := range servers {
		if coreOf(s.Server).TLS != nil {
			t.Errorf("server %s has TLS settings without a certificate", s.Name)
		}
	}
	last := servers[4].Server.(*smtp.Server)
	if want := []string{"SIZE 10485760", "AUTH=LOGIN PLAIN", "PIPELINING"}; !reflect.DeepEqual(last.Capabilities, want) {
		t.Errorf("smtp_capabilities %q", last.Capabilities)
	}
	if want := []string{"stderr"}; !reflect.DeepEqual(cfg.ErrorLog, want) {
		t.Errorf("error_log %q, want %q", cfg.ErrorLog, want)
	}
	if servers[0].Name != "testdata/nginx-full.conf:87" {
		t.Errorf("server name %q", servers[0].Name)
	}
}

func TestLoadDirectives(t *testing.T) {
	cert := inlineCertificate(t)
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, s mailproxy.ServerConfig)
	}{
		{"core", `server { listen 127.0.0.1:1143; protocol imap; server_name mx.test; timeout 1m30s;
			max_errors 3; max_commands 50; proxy_timeout 2h; proxy_buffer 8k; proxy_pass_error_message on; }`,
			func(t *testing.T, s mailproxy.ServerConfig) {
				want := session.Config{ServerName: "mx.test", Timeout: 90 * time.Second, MaxErrors: 3, MaxCommands: 50,
					ProxyTimeout: 2 * time.Hour, ProxyBuffer: 8 << 10, PassErrorMessage: true}
				got := coreOf(s.Server)
				got.Logger, got.Auth = nil, nil
				if !reflect.DeepEqual(got, want) {
					t.Errorf("got %+v\nwant %+v", got, want)
				}
			}},
		{"PROXY protocol", `server { listen 1143 proxy_protocol; protocol imap; proxy_protocol on; timeout 7s;
			set_real_ip_from 10.0.0.0/8; set_real_ip_from 2001:db8::1; set_real_ip_from unix:; }`,
			func(t *testing.T, s mailproxy.ServerConfig) {
				want := session.RealIP{From: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")}, Unix: true}
				core := coreOf(s.Server)
				if !reflect.DeepEqual(core.RealIP, want) || core.Timeout != 7*time.Second || core.SendProxyProtocol != 1 || !s.Listen[0].ProxyProtocol {
					t.Errorf("got %+v, core %+v", s, core)
				}
			}},
		{"max_errors 0 closes at the first error", `server { listen 1143; protocol imap; max_errors 0; }`,
			func(t *testing.T, s mailproxy.ServerConfig) {
				if n := coreOf(s.Server).MaxErrors; n != 1 {
					t.Errorf("MaxErrors = %d, want 1", n)
				}
			}},
		{"imap", `server { listen 1143; protocol imap; imap_capabilities IMAP4rev1 IDLE; imap_auth login cram-md5 external; imap_client_buffer 16k; }`,
			func(t *testing.T, s mailproxy.ServerConfig) {
				im := s.Server.(*imap.Server)
				if !reflect.DeepEqual(im.Capabilities, []string{"IMAP4rev1", "IDLE"}) ||
					!reflect.DeepEqual(im.AuthMethods, []string{"login", "cram-md5", "external"}) || im.ClientBuffer != 16<<10 {
					t.Errorf("got %q %q %d", im.Capabilities, im.AuthMethods, im.ClientBuffer)
				}
			}},
		{"pop3", `server { listen 1110; protocol pop3; pop3_capabilities TOP USER; pop3_auth plain apop cram-md5 external; }`,
			func(t *testing.T, s mailproxy.ServerConfig) {
				p := s.Server.(*pop3.Server)
				if !reflect.DeepEqual(p.Capabilities, []string{"TOP", "USER"}) ||
					!reflect.DeepEqual(p.AuthMethods, []string{"plain", "apop", "cram-md5", "external"}) {
					t.Errorf("got %q %q", p.Capabilities, p.AuthMethods)
				}
			}},
		{"smtp", `server { listen 1025; protocol smtp; smtp_capabilities "SIZE 1000" 8BITMIME; smtp_auth none login; smtp_client_buffer 1m;
			smtp_greeting_delay 500ms; xclient off; proxy_smtp_auth on; }`,
			func(t *testing.T, s mailproxy.ServerConfig) {
				sm := s.Server.(*smtp.Server)
				if !reflect.DeepEqual(sm.Capabilities, []string{"SIZE 1000", "8BITMIME"}) ||
					!reflect.DeepEqual(sm.AuthMethods, []string{"none", "login"}) || sm.ClientBuffer != 1<<20 ||
					sm.GreetingDelay != 500*time.Millisecond || !sm.DisableXClient || !sm.BackendAuth {
					t.Errorf("got %+v", sm)
				}
			}},
		{"smtp xclient default on", `server { listen 1025; protocol smtp; }`,
			func(t *testing.T, s mailproxy.ServerConfig) {
				if sm := s.Server.(*smtp.Server); sm.DisableXClient || sm.BackendAuth || sm.GreetingDelay != 0 {
					t.Errorf("got %+v", sm)
				}
			}},
		{"listen parameters", `server { protocol imap; ` + cert + `
			listen 127.0.0.1:1143 ssl proxy_protocol backlog=100 rcvbuf=64k sndbuf=1m bind ipv6only=off reuseport so_keepalive=30m::10 multipath;
			listen unix:/run/mail.sock; listen [::1]:1143 so_keepalive=on; listen 1144 so_keepalive=off; listen 1145 so_keepalive=:75s:; }`,
			func(t *testing.T, s mailproxy.ServerConfig) {
				want := []mailproxy.ListenConfig{
					{Address: "127.0.0.1:1143", SSL: true, ProxyProtocol: true, Backlog: 100, RcvBuf: 64 << 10, SndBuf: 1 << 20,
						Bind: true, IPv6Only: mailproxy.Off, ReusePort: true, KeepAlive: mailproxy.On, KeepIdle: 30 * time.Minute,
						KeepCnt: 10, Multipath: true},
					{Address: "unix:/run/mail.sock"},
					{Address: "[::1]:1143", KeepAlive: mailproxy.On},
					{Address: "1144", KeepAlive: mailproxy.Off},
					{Address: "1145", KeepAlive: mailproxy.On, KeepIntvl: 75 * time.Second},
				}
				if !reflect.DeepEqual(s.Listen, want) {
					t.Errorf("got  %+v\nwant %+v", s.Listen, want)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := mustServers(t, tt.body)
			if len(servers) != 1 {
				t.Fatalf("%d servers", len(servers))
			}
			tt.check(t, servers[0])
		})
	}
}

func TestInheritance(t *testing.T) {
	servers := mustServers(t, `
		timeout 10s;
		imap_capabilities IMAP4rev1 BASE;
		server { listen 1143; protocol imap; }
		server { listen 1144; protocol imap; timeout 20s; imap_capabilities IMAP4rev1 OWN; }
		max_errors 7; # after the servers, still inherited (nginx merges after reading)
	`)
	first, second := servers[0].Server.(*imap.Server), servers[1].Server.(*imap.Server)
	if first.Config.Timeout != 10*time.Second || second.Config.Timeout != 20*time.Second {
		t.Errorf("timeouts %v %v, want 10s 20s", first.Config.Timeout, second.Config.Timeout)
	}
	if first.Capabilities[1] != "BASE" || second.Capabilities[1] != "OWN" {
		t.Errorf("capabilities %q %q", first.Capabilities, second.Capabilities)
	}
	if first.Config.MaxErrors != 7 || second.Config.MaxErrors != 7 {
		t.Errorf("max_errors %d %d, want 7 7", first.Config.MaxErrors, second.Config.MaxErrors)
	}
	if first.Config.ServerName != "" {
		t.Errorf("server_name %q, want empty (the host name at run time)", first.Config.ServerName)
	}
}

func TestProtocolAutodetect(t *testing.T) {
	tests := []struct {
		listen string
		want   string
	}{
		{"143", "imap"}, {"127.0.0.1:993", "imap"}, {"[::1]:110", "pop3"}, {"*:995", "pop3"},
		{"25", "smtp"}, {"587", "smtp"}, {"localhost:465", "smtp"},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			srv := mustServers(t, "server { listen "+tt.listen+"; }")[0].Server
			got := map[string]string{"*imap.Server": "imap", "*pop3.Server": "pop3", "*smtp.Server": "smtp"}[reflect.TypeOf(srv).String()]
			if got != tt.want {
				t.Errorf("got %T, want %s", srv, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	const auth = "auth_http 127.0.0.1:9000/auth;\n"
	tests := []struct {
		name, src, want string
	}{
		{"no mail", "events {}\n", `test.conf: no "mail" block`},
		{"two mail blocks", "mail { " + auth + " }\nmail {}\n", `test.conf:3: "mail" directive is duplicate`},
		{"mail without block", "mail;\n", `test.conf:1: directive "mail" has no opening "{"`},
		{"unknown", "mail {\n" + auth + "frobnicate on;\n}\n", `test.conf:3: unknown directive "frobnicate"`},
		{"listen at mail level", "mail {\nlisten 143;\n}\n", `test.conf:2: "listen" directive is not allowed here`},
		{"server in server", "mail {\nserver {\nserver { }\n}\n}\n", `test.conf:3: "server" directive is not allowed here`},
		{"server without block", "mail {\nserver;\n}\n", `test.conf:2: directive "server" has no opening "{"`},
		{"duplicate", "mail {\ntimeout 1s;\ntimeout 2s;\n}\n", `test.conf:3: "timeout" directive is duplicate`},
		{"block on simple", "mail {\ntimeout 1s { }\n}\n", `test.conf:2: unexpected "{" after "timeout" directive`},
		{"too few args", "mail {\ntimeout;\n}\n", `test.conf:2: invalid number of arguments in "timeout" directive`},
		{"too many args", "mail {\ntimeout 1s 2s;\n}\n", `test.conf:2: invalid number of arguments in "timeout" directive`},
		{"bad time", "mail {\ntimeout 5x;\n}\n", `test.conf:2: invalid time "5x" in "timeout" directive`},
		{"bad size", "mail {\nproxy_buffer 4q;\n}\n", `test.conf:2: invalid size "4q" in "proxy_buffer" directive`},
		{"zero size", "mail {\nimap_client_buffer 0;\n}\n", `test.conf:2: invalid size "0" in "imap_client_buffer" directive`},
		{"bad number", "mail {\nmax_errors -1;\n}\n", `test.conf:2: invalid number "-1" in "max_errors" directive`},
		{"bad flag", "mail {\nproxy_pass_error_message yes;\n}\n", `test.conf:2: invalid value "yes", it must be "on" or "off" in "proxy_pass_error_message" directive`},
		{"bad imap_auth", "mail {\nimap_auth plain apop;\n}\n", `test.conf:2: invalid value "apop" in "imap_auth" directive`},
		{"bad pop3_auth", "mail {\npop3_auth login;\n}\n", `test.conf:2: invalid value "login" in "pop3_auth" directive`},
		{"bad smtp_auth", "mail {\nsmtp_auth apop;\n}\n", `test.conf:2: invalid value "apop" in "smtp_auth" directive`},
		{"bad protocol", "mail {\nserver {\nprotocol nntp;\n}\n}\n", `test.conf:3: unknown protocol "nntp" in "protocol" directive`},
		{"bad starttls", "mail {\nstarttls maybe;\n}\n", `test.conf:2: invalid value "maybe" in "starttls" directive`},
		{"bad ssl_protocols", "mail {\nssl_protocols TLSv1.2 TLSv9;\n}\n", `test.conf:2: invalid value "TLSv9" in "ssl_protocols" directive`},
		{"bad ssl_verify_client", "mail {\nssl_verify_client sometimes;\n}\n", `test.conf:2: invalid value "sometimes" in "ssl_verify_client" directive`},
		{"bad auth_http_timeout", "mail {\nauth_http_timeout soon;\n}\n", `test.conf:2: invalid time "soon" in "auth_http_timeout" directive`},
		{"set_real_ip_from at mail level", "mail {\nset_real_ip_from 10.0.0.0/8;\n}\n", `test.conf:2: "set_real_ip_from" directive is not allowed here`},
		{"bad listen parameter", "mail {\n" + auth + "server {\nlisten 143 fast;\n}\n}\n", `test.conf:4: invalid parameter "fast" in "listen" directive`},
		{"bad backlog", "mail {\n" + auth + "server {\nlisten 143 backlog=lots;\n}\n}\n", `test.conf:4: listen backlog=lots: strconv.Atoi: parsing "lots": invalid syntax in "listen" directive`},
		{"bad keepalive", "mail {\n" + auth + "server {\nlisten 143 so_keepalive=1:2;\n}\n}\n", `test.conf:4: listen so_keepalive=1:2: invalid so_keepalive value "1:2" in "listen" directive`},
		{"bad keepalive count", "mail {\n" + auth + "server {\nlisten 143 so_keepalive=::x;\n}\n}\n", `test.conf:4: listen so_keepalive=::x: invalid so_keepalive count "x" in "listen" directive`},
		{"bad ipv6only", "mail {\n" + auth + "server {\nlisten [::]:143 ipv6only=maybe;\n}\n}\n", `test.conf:4: listen ipv6only=maybe: invalid value "maybe", it must be "on" or "off" in "listen" directive`},
		{"no listen", "mail {\n" + auth + "server {\nprotocol imap;\n}\n}\n", `test.conf:3: no "listen" is defined for server`},
		{"no protocol", "mail {\n" + auth + "server {\nlisten 1234;\n}\n}\n", `test.conf:3: protocol is not defined for server`},
		{"no auth_http", "mail {\nserver {\nlisten 143;\n}\n}\n", `test.conf:2: no "auth_http" is defined for server`},
		{"bad auth_http", "mail {\nauth_http https://a.example/;\n}\n", `test.conf:2: only http:// is supported in "auth_http" directive`},
		{"bad auth_http port", "mail {\nauth_http 127.0.0.1:0/x;\n}\n", `test.conf:2: invalid port in "auth_http" directive`},
		{"bad auth_http_header", "mail {\nauth_http_header \"X: Y\" z;\n}\n", `test.conf:2: invalid header "X: Y" in "auth_http_header" directive`},
		{"auth_http_header name not an HTTP token", "mail {\n" + auth + "auth_http_header X(Y) z;\nserver {\nlisten 143;\nprotocol imap;\n}\n}\n", `test.conf:4: auth_http_header: invalid name "X(Y)"`},
		{"bad set_real_ip_from", "mail {\n" + auth + "server {\nset_real_ip_from 10.0.0.0/33;\n}\n}\n", `test.conf:4: invalid address "10.0.0.0/33" in "set_real_ip_from" directive`},
		{"top-level pid args", "pid;\nmail {}\n", `test.conf:1: invalid number of arguments in "pid" directive`},
		{"syntax", "mail {\n", `test.conf:2: unexpected end of file, expecting "}"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadString(t, tt.src)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n got %q\nwant %q", err, tt.want)
			}
			var cerr *Error
			if positioned.MatchString(tt.want) && !errors.As(err, &cerr) {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

var positioned = regexp.MustCompile(`^test\.conf:\d+: `)

func TestLoadOptions(t *testing.T) {
	dir := t.TempDir()
	a := auth.Static{"u": {Password: "p", Backend: "127.0.0.1:1"}}
	cfg, err := LoadBytes("x.conf", []byte("mail { server { listen 1143; protocol imap; } }"), dir,
		Options{Prefix: "/srv/mail", Globals: "pid run/mail.pid; error_log stderr debug;", Auth: a, Logger: quiet(), Outputs: quietLogs()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PID != "/srv/mail/run/mail.pid" {
		t.Errorf("pid %q", cfg.PID)
	}
	if !reflect.DeepEqual(cfg.ErrorLog, []string{"stderr"}) || !cfg.Logger.Enabled(t.Context(), slog.LevelDebug) {
		t.Errorf("error_log %q", cfg.ErrorLog)
	}
	if got := coreOf(cfg.Proxy.Servers[0].Server).Auth; !reflect.DeepEqual(got, auth.Authenticator(a)) {
		t.Errorf("Auth %v, want the Options' authenticator", got)
	}
	if _, err := LoadBytes("x.conf", []byte("mail {}"), dir, Options{Globals: "pid", Logger: quiet()}); err == nil {
		t.Error("a broken -g was accepted")
	}
}

func TestAuthHTTPSettings(t *testing.T) {
	servers := mustServers(t, `
		auth_http_header X-Auth-Key "shared secret";
		auth_http_header X-Tenant main;
		auth_http_timeout 5s;
		server { listen 1143; protocol imap; }
		server { listen 1144; protocol imap; }
		server { listen 1145; protocol imap; auth_http_header X-Tenant other; auth_http_pass_client_cert on; }
		server { listen 1146; protocol imap; auth_http unix:/run/auth.sock:/check; }
	`)
	clients := make([]*auth.HTTP, len(servers))
	for i, s := range servers {
		clients[i] = coreOf(s.Server).Auth.(*auth.HTTP)
	}
	if clients[0] != clients[1] {
		t.Error("servers with the same auth_http settings do not share one client")
	}
	want := [][2]string{{"X-Auth-Key", "shared secret"}, {"X-Tenant", "main"}}
	if c := clients[0]; c.URL != "127.0.0.1:9000/auth" || c.Timeout != 5*time.Second || !reflect.DeepEqual(c.Header, want) || c.PassClientCert {
		t.Errorf("first client %+v", c)
	}
	if c := clients[2]; !reflect.DeepEqual(c.Header, [][2]string{{"X-Tenant", "other"}}) || !c.PassClientCert || c == clients[0] {
		t.Errorf("a server's own auth_http_header must replace the inherited ones: %+v", c)
	}
	if c := clients[3]; c.URL != "unix:/run/auth.sock:/check" || c.Timeout != 5*time.Second {
		t.Errorf("fourth client %+v", c)
	}
}

// "proxy on|off", which nginx accepts and ignores, loads at mail and
// server level with a warning naming each: first the commented mail block
// of Debian's stock nginx.conf, uncommented (auth_http too, which nginx
// also requires). Its value is checked as nginx checks a flag.
func TestProxyDirective(t *testing.T) {
	debian := `mail {
	# See sample authentication script at:
	# http://wiki.nginx.org/ImapAuthenticateWithApachePhpScript

	auth_http localhost/auth.php;
	pop3_capabilities "TOP" "USER";
	imap_capabilities "IMAP4rev1" "UIDPLUS";

	server {
		listen     localhost:110;
		protocol   pop3;
		proxy      on;
	}

	server {
		listen     localhost:143;
		protocol   imap;
		proxy      on;
	}
}`
	tests := []struct {
		name, src string
		warned    []string // the positions warned about
		err       string
	}{
		{"Debian's example", debian, []string{"p.conf:12", "p.conf:18"}, ""},
		{"mail and server level", "mail {\nauth_http 127.0.0.1:9000/auth;\nproxy off;\nserver { listen 1143; protocol imap; proxy on; }\nserver { listen 1144; protocol imap; }\n}",
			[]string{"p.conf:3", "p.conf:4"}, ""},
		{"not a flag", "mail {\nauth_http 127.0.0.1:9000/auth;\nproxy yes;\n}", nil,
			`p.conf:3: invalid value "yes", it must be "on" or "off" in "proxy" directive`},
		{"duplicate", "mail {\nauth_http 127.0.0.1:9000/auth;\nserver { listen 1143; protocol imap; proxy on; proxy off; }\n}", nil,
			`p.conf:3: "proxy" directive is duplicate`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			cfg, err := LoadBytes("p.conf", []byte(tt.src), t.TempDir(), Options{Logger: log})
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Proxy.Servers) != 2 {
				t.Errorf("%d servers", len(cfg.Proxy.Servers))
			}
			var warned []string
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if strings.Contains(line, `msg="changes nothing: sessions are always proxied (nginx ignores the directive too)" directive=proxy at=`) {
					_, at, _ := strings.Cut(line, " at=")
					warned = append(warned, at)
				}
			}
			if !slices.Equal(warned, tt.warned) {
				t.Errorf("warnings at %q, want %q; logs:\n%s", warned, tt.warned, logs.String())
			}
		})
	}
	// The full configuration, which has it, loads with the warning.
	var logs bytes.Buffer
	if _, err := Load("testdata/nginx-full.conf", Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), ErrorLog: "stderr", Outputs: quietLogs()}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "directive=proxy at=testdata/nginx-full.conf:119") {
		t.Errorf("no warning about proxy in\n%s", logs.String())
	}
}
