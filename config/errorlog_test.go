package config

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailproxy/mailproxy/errorlog"
)

// logsIn returns the lines of each file of dir, by name.
func logsIn(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	got := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got[filepath.Base(f)] = string(b)
	}
	return got
}

// error_log in the main context, the mail block and a server block, with
// nginx's inheritance: a server without error_log logs where its mail
// block does, which without one logs where the main context does; a
// block's several error_log are all written, each at its level.
func TestErrorLogContexts(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// where each logger's lines at info and at error go
		main, imap, pop3 [2][]string
	}{
		{
			name: "each context its own",
			src: `error_log main.log info; error_log main-errors.log;
				mail { auth_http 127.0.0.1:9/auth; error_log mail.log debug;
					server { listen 127.0.0.1:1143; protocol imap; }
					server { listen 127.0.0.1:1110; protocol pop3; error_log pop3.log notice; error_log pop3-all.log info; } }`,
			main: [2][]string{{"main.log"}, {"main.log", "main-errors.log"}},
			imap: [2][]string{{"mail.log"}, {"mail.log"}},
			pop3: [2][]string{{"pop3-all.log"}, {"pop3.log", "pop3-all.log"}},
		},
		{
			name: "servers inherit the main context's",
			src: `error_log main.log info;
				mail { auth_http 127.0.0.1:9/auth;
					server { listen 127.0.0.1:1143; protocol imap; }
					server { listen 127.0.0.1:1110; protocol pop3; error_log pop3.log error; } }`,
			main: [2][]string{{"main.log"}, {"main.log"}},
			imap: [2][]string{{"main.log"}, {"main.log"}},
			pop3: [2][]string{{}, {"pop3.log"}},
		},
		{
			name: "no error_log: standard error at level error",
			src: `mail { auth_http 127.0.0.1:9/auth;
					server { listen 127.0.0.1:1143; protocol imap; }
					server { listen 127.0.0.1:1110; protocol pop3; } }`,
			main: [2][]string{{}, {"stderr"}},
			imap: [2][]string{{}, {"stderr"}},
			pop3: [2][]string{{}, {"stderr"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var stderr bytes.Buffer
			cfg, err := LoadBytes("logs.conf", []byte(tt.src), dir, Options{Logger: quiet(), Outputs: &errorlog.Outputs{Stderr: &stderr}})
			if err != nil {
				t.Fatal(err)
			}
			defer cfg.Close()
			loggers := map[string]*slog.Logger{
				"main": cfg.Logger,
				"imap": coreOf(cfg.Proxy.Servers[0].Server).Logger,
				"pop3": coreOf(cfg.Proxy.Servers[1].Server).Logger,
			}
			for name, log := range loggers {
				log.Info(name + " info")
				log.Error(name + " error")
			}
			got := logsIn(t, dir)
			got["stderr"] = stderr.String()
			for name, want := range map[string][2][]string{"main": tt.main, "imap": tt.imap, "pop3": tt.pop3} {
				for i, msg := range []string{name + " info", name + " error"} {
					var in []string
					for file, lines := range got {
						if strings.Contains(lines, "#0: "+msg+"\n") {
							in = append(in, file)
						}
					}
					if !sameSet(in, want[i]) {
						t.Errorf("%q went to %q, want %q", msg, in, want[i])
					}
				}
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !strings.Contains(strings.Join(b, "\x00")+"\x00", x+"\x00") {
			return false
		}
	}
	return true
}

// -e replaces the main context's error_log at the most verbose of their
// levels; the mail and server blocks keep theirs.
func TestErrorLogOverride(t *testing.T) {
	dir := t.TempDir()
	src := `error_log main.log warn; error_log main-info.log info;
		mail { auth_http 127.0.0.1:9/auth; server { listen 127.0.0.1:1143; protocol imap; error_log imap.log; } }`
	cfg, err := LoadBytes("e.conf", []byte(src), dir, Options{Logger: quiet(), ErrorLog: "e.log"})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if want := filepath.Join(dir, "e.log"); len(cfg.ErrorLog) != 1 || cfg.ErrorLog[0] != want {
		t.Errorf("ErrorLog %q, want %q", cfg.ErrorLog, want)
	}
	cfg.Logger.Info("main at info")
	coreOf(cfg.Proxy.Servers[0].Server).Logger.Error("imap at error")
	got := logsIn(t, dir)
	if len(got) != 2 || !strings.Contains(got["e.log"], "[info] ") || !strings.Contains(got["imap.log"], "imap at error") {
		t.Errorf("logs %q", got)
	}
}

// error_log_format json (ours) writes JSON lines; Options.LogFormat
// overrides it.
func TestErrorLogFormat(t *testing.T) {
	tests := []struct {
		directive, option string
		json              bool
	}{
		{"error_log_format json;", "", true},
		{"error_log_format nginx;", "", false},
		{"", "json", true},
		{"error_log_format json;", "nginx", false},
	}
	for _, tt := range tests {
		t.Run(tt.directive+tt.option, func(t *testing.T) {
			dir := t.TempDir()
			src := tt.directive + ` error_log main.log info;
				mail { auth_http 127.0.0.1:9/auth; server { listen 127.0.0.1:1143; protocol imap; error_log imap.log info; } }`
			cfg, err := LoadBytes("f.conf", []byte(src), dir, Options{Logger: quiet(), LogFormat: tt.option})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Logger.Log(context.Background(), errorlog.LevelNotice, "main")
			coreOf(cfg.Proxy.Servers[0].Server).Logger.Info("imap", errorlog.ConnKey, 7)
			cfg.Close()
			for file, lines := range logsIn(t, dir) {
				var m map[string]any
				isJSON := json.Unmarshal([]byte(lines), &m) == nil
				if isJSON != tt.json || tt.json && m["level"] != map[string]string{"main.log": "notice", "imap.log": "info"}[file] {
					t.Errorf("%s holds %q", file, lines)
				}
			}
		})
	}
}

// The outputs are Resources of the configuration: closed with it. With
// one Outputs for every Load, Reopen reopens the files of every
// configuration still open.
func TestErrorLogResources(t *testing.T) {
	dir := t.TempDir()
	outs := &errorlog.Outputs{}
	src := `error_log main.log info; mail { auth_http 127.0.0.1:9/auth; server { listen 127.0.0.1:1143; protocol imap; error_log imap.log info; } }`
	load := func() *Config {
		cfg, err := LoadBytes("r.conf", []byte(src), dir, Options{Logger: quiet(), Outputs: outs})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first, second := load(), load()
	if n := len(first.Proxy.Resources) - len(withoutLogs(first.Proxy.Resources)); n != 2 {
		t.Errorf("%d error logs among the Resources, want 2", n)
	}
	first.Close()
	for _, f := range []string{"main.log", "imap.log"} {
		os.Rename(filepath.Join(dir, f), filepath.Join(dir, f+".1"))
	}
	if err := outs.Reopen(); err != nil {
		t.Fatal(err)
	}
	second.Logger.Info("after the rotation")
	if got := logsIn(t, dir); !strings.Contains(got["main.log"], "after the rotation") || got["imap.log"] != "" {
		t.Errorf("logs after Reopen: %q", got)
	}
	second.Close()
	os.Remove(filepath.Join(dir, "main.log"))
	outs.Reopen()
	if _, err := os.Stat(filepath.Join(dir, "main.log")); !os.IsNotExist(err) {
		t.Errorf("a file of closed configurations was reopened: %v", err)
	}
}

func TestErrorLogErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"error_log a.log verbose; mail {}", `e.conf:1: invalid log level "verbose" in "error_log" directive`},
		{"error_log a.log info error; mail {}", `e.conf:1: invalid number of arguments in "error_log" directive`},
		{"error_log memory:32m debug; mail {}", `e.conf:1: "memory:" logs (nginx's debugging buffer) are not supported in "error_log" directive`},
		{"error_log syslog:server=h,facility=x; mail {}", `e.conf:1: unknown syslog facility "x" in "error_log" directive`},
		{"error_log_format yaml; mail {}", `e.conf:1: unknown log format "yaml" (nginx or json) in "error_log_format" directive`},
		{"error_log_format json; error_log_format json; mail {}", `e.conf:1: "error_log_format" directive is duplicate`},
		{"mail { error_log_format json; }", `e.conf:1: unknown directive "error_log_format"`},
		{"mail { error_log a.log warning; }", `e.conf:1: invalid log level "warning" in "error_log" directive`},
		{"mail { auth_http 127.0.0.1:9/auth;\nserver { listen 127.0.0.1:1143; protocol imap;\nerror_log no/such/dir/imap.log; } }", `e.conf:3: error_log `},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			_, err := LoadBytes("e.conf", []byte(tt.src), t.TempDir(), Options{Logger: quiet(), Outputs: quietLogs()})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
