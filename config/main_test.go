package config

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
)

// process holds the fields of Config for the program's process.
type process struct {
	User, Group                  string
	RlimitNofile, MaxConnections int
}

// The main context's directives that concern the process, and the limits
// of the mail block.
func TestMainContextAndLimits(t *testing.T) {
	const mail = "mail {\nauth_http 127.0.0.1:9000/auth;\n%s\nserver { listen 143; }\n}\n"
	tests := []struct {
		name, main, mail string
		want             process
		shutdown         time.Duration
		limits           mailproxy.ClientLimits
	}{
		{name: "none"},
		{name: "user", main: "user mail;", want: process{User: "mail"}},
		{name: "user and group", main: "user mail nogroup;", want: process{User: "mail", Group: "nogroup"}},
		{name: "rlimit", main: "worker_rlimit_nofile 65536;", want: process{RlimitNofile: 65536}},
		{name: "worker_connections", main: "events { worker_connections 768; multi_accept on; }", want: process{MaxConnections: 768}},
		{name: "max_connections", main: "max_connections 2000;", want: process{MaxConnections: 2000}},
		{name: "the smaller of both", main: "max_connections 2000; events { worker_connections 512; }", want: process{MaxConnections: 512}},
		{name: "shutdown timeout", main: "worker_shutdown_timeout 10s;", shutdown: 10 * time.Second},
		{name: "no effect", main: "daemon off; master_process on; worker_processes 4; worker_cpu_affinity auto; worker_priority -5; load_module x.so;"},
		{name: "connections per client", mail: "max_connections_per_client 20;", limits: mailproxy.ClientLimits{Connections: 20}},
		{name: "failures per client", mail: "max_login_failures_per_client 10;", limits: mailproxy.ClientLimits{LoginFailures: 10}},
		{name: "failures per client and window", mail: "max_login_failures_per_client 5 15m;",
			limits: mailproxy.ClientLimits{LoginFailures: 5, LoginWindow: 15 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadString(t, tt.main+"\n"+strings.Replace(mail, "%s", tt.mail, 1))
			if err != nil {
				t.Fatal(err)
			}
			got := process{cfg.User, cfg.Group, cfg.RlimitNofile, cfg.MaxConnections}
			if got != tt.want {
				t.Errorf("%+v, want %+v", got, tt.want)
			}
			if cfg.Proxy.ShutdownTimeout != tt.shutdown {
				t.Errorf("ShutdownTimeout %v, want %v", cfg.Proxy.ShutdownTimeout, tt.shutdown)
			}
			if cfg.Proxy.ClientLimits != tt.limits {
				t.Errorf("ClientLimits %+v, want %+v", cfg.Proxy.ClientLimits, tt.limits)
			}
		})
	}
}

func TestMainContextErrors(t *testing.T) {
	const mail = "mail {\nauth_http 127.0.0.1:9000/auth;\n%s\n}\n"
	tests := []struct {
		name, src, want string
	}{
		{"user without a name", "user;\n", `test.conf:1: invalid number of arguments in "user" directive`},
		{"bad rlimit", "worker_rlimit_nofile many;\n", `test.conf:1: invalid number "many" in "worker_rlimit_nofile" directive`},
		{"zero connections", "events {\nworker_connections 0;\n}\n", `test.conf:2: invalid number "0" in "worker_connections" directive`},
		{"events without block", "events;\n", `test.conf:1: directive "events" has no opening "{"`},
		{"bad shutdown timeout", "worker_shutdown_timeout soon;\n", `test.conf:1: invalid time "soon" in "worker_shutdown_timeout" directive`},
		{"limit in a server", strings.Replace(mail, "%s", "server {\nmax_connections_per_client 5;\n}", 1),
			`test.conf:4: "max_connections_per_client" directive is not allowed here`},
		{"no failures", strings.Replace(mail, "%s", "max_login_failures_per_client 0;", 1),
			`test.conf:3: invalid number "0" in "max_login_failures_per_client" directive`},
		{"zero window", strings.Replace(mail, "%s", "max_login_failures_per_client 3 0s;", 1),
			`test.conf:3: invalid time "0s" in "max_login_failures_per_client" directive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if !strings.Contains(src, "mail") {
				src += "mail { auth_http 127.0.0.1:9000/auth; }\n"
			}
			_, err := loadString(t, src)
			if err == nil || err.Error() != tt.want {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// A directive that means nothing here is named at notice level, with what
// replaces it; a block of another module is skipped quietly.
func TestNoEffectNotices(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	src := "worker_processes auto;\nevents {\nuse epoll;\n}\nhttp {\nserver { listen 80; }\n}\nmail { auth_http 127.0.0.1:9000/auth; }\n"
	if _, err := LoadBytes("test.conf", []byte(src), t.TempDir(), Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`directive=worker_processes at=test.conf:1 instead="one process uses every CPU; GOMAXPROCS limits how many"`,
		`directive=use at=test.conf:3 instead=`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q in\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "http") {
		t.Errorf("the http block is named at info level:\n%s", logs.String())
	}
}

// LoadMain reads the main context alone: the pid file of a configuration
// whose mail block would not load.
func TestLoadMain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.conf")
	os.WriteFile(path, []byte("pid run/mail.pid;\nmail {\nfrobnicate on;\n}\n"), 0o644)
	cfg, err := LoadMain(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "run/mail.pid"); cfg.PID != want || cfg.Proxy != nil {
		t.Errorf("PID %q, Proxy %v; want %q and none", cfg.PID, cfg.Proxy, want)
	}
	if _, err := Load(path, Options{Logger: quiet()}); err == nil {
		t.Error("Load took the broken mail block")
	}
}

// memFiles is a file system in memory.
type memFiles map[string][]byte

func (m memFiles) ReadFile(path string) ([]byte, error) {
	if b, ok := m[path]; ok {
		return b, nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
}

func (m memFiles) Glob(pattern string) ([]string, error) {
	var paths []string
	for p := range m {
		if ok, _ := filepath.Match(pattern, p); ok {
			paths = append(paths, p)
		}
	}
	return paths, nil
}

// With Options.Files, Load reads the configuration, its includes, and the
// certificates, keys and ticket keys through it, and nothing from the
// file system: how a program that dropped root reloads.
func TestLoadThroughFiles(t *testing.T) {
	dir := tlsDir(t)
	files := memFiles{}
	for _, name := range []string{"ecdsa.crt", "ecdsa.key", "tk48"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files["/nowhere/"+name] = b
	}
	files["/nowhere/mail.conf"] = []byte("mail {\ninclude conf.d/*.conf;\nserver { listen 143; }\n}\n")
	files["/nowhere/conf.d/tls.conf"] = []byte("auth_http 127.0.0.1:9000/auth;\nssl_certificate ecdsa.crt;\nssl_certificate_key ecdsa.key;\nssl_session_ticket_key tk48;\n")
	cfg, err := Load("/nowhere/mail.conf", Options{Files: files, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if tls := coreOf(cfg.Proxy.Servers[0].Server).TLS; tls == nil || len(tls.Config.Certificates) != 1 {
		t.Errorf("TLS %+v, want the certificate read through Files", tls)
	}
	delete(files, "/nowhere/ecdsa.key")
	if _, err := Load("/nowhere/mail.conf", Options{Files: files, Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "ecdsa.key") {
		t.Errorf("without the key: %v", err)
	}
}
