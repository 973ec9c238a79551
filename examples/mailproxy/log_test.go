package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// logConf writes a configuration whose main context and IMAP server log
// to files of dir at level info: error.log and imap.log, or the server's
// log named. The pid file is in dir too.
func logConf(t *testing.T, dir, addr string, imapLog ...string) string {
	t.Helper()
	conf := filepath.Join(dir, "mail.conf")
	server := "imap.log"
	if len(imapLog) > 0 {
		server = imapLog[0]
	}
	src := fmt.Sprintf(`error_log error.log info;
pid mail.pid;
mail {
    auth_http 127.0.0.1:9/auth;
    server { listen %s; protocol imap; error_log %s info; }
}
`, addr, server)
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// connected opens a session and returns the client's port, once the
// session's first line is logged in path.
func connected(t *testing.T, addr, path string) int {
	t.Helper()
	c := testutil.Dial(t, "tcp", addr)
	c.Line()
	port := c.Conn.LocalAddr().(*net.TCPAddr).Port
	testutil.WaitFor(t, "the session's line in "+path, func() bool { return hasSession(readLog(t, path), port) })
	c.Conn.Close()
	return port
}

func hasSession(log string, port int) bool {
	return strings.Contains(log, "client connected, client: 127.0.0.1, server: ") && strings.Contains(log, "client_port: "+strconv.Itoa(port)+"\n")
}

// logrotate without copytruncate: the files are renamed, SIGUSR1 makes
// the running process open new ones, and what follows lands there.
func TestUSR1ReopensLogFiles(t *testing.T) {
	dir := t.TempDir()
	addr := testutil.FreeAddr(t)
	p := startBinary(t, "-c", logConf(t, dir, addr))
	testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(addr) })
	mainLog, imapLog := filepath.Join(dir, "error.log"), filepath.Join(dir, "imap.log")
	before := connected(t, addr, imapLog)

	for _, f := range []string{mainLog, imapLog} {
		if err := os.Rename(f, f+".1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "logs reopened in a new main log", func() bool { return strings.Contains(readLog(t, mainLog), "[notice] ") })
	after := connected(t, addr, imapLog)

	oldMain, newMain := readLog(t, mainLog+".1"), readLog(t, mainLog)
	if !strings.Contains(oldMain, "[notice] "+strconv.Itoa(p.cmd.Process.Pid)+"#0: reopening logs") || strings.Contains(oldMain, "logs reopened") {
		t.Errorf("the renamed main log holds:\n%s", oldMain)
	}
	if !strings.Contains(newMain, "#0: logs reopened\n") || strings.Contains(newMain, "reopening logs") {
		t.Errorf("the new main log holds:\n%s", newMain)
	}
	oldIMAP, newIMAP := readLog(t, imapLog+".1"), readLog(t, imapLog)
	if !hasSession(oldIMAP, before) || hasSession(oldIMAP, after) || hasSession(newIMAP, before) || !hasSession(newIMAP, after) {
		t.Errorf("sessions in the renamed IMAP log:\n%s\nin the new one:\n%s", oldIMAP, newIMAP)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
}

// A reload opens the log files its configuration names anew, in a folder
// only root may write to when the program runs as root and serves as
// nobody.
func TestReloadOpensNewLogFile(t *testing.T) {
	dir := t.TempDir() // 0700
	addr := testutil.FreeAddr(t)
	p := startBinary(t, "-c", logConf(t, dir, addr))
	testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(addr) })
	before := connected(t, addr, filepath.Join(dir, "imap.log"))

	logConf(t, dir, addr, "imap-new.log")
	p.cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, "the reload", func() bool {
		return strings.Contains(readLog(t, filepath.Join(dir, "error.log")), "configuration reloaded")
	})
	after := connected(t, addr, filepath.Join(dir, "imap-new.log"))
	if old := readLog(t, filepath.Join(dir, "imap.log")); !hasSession(old, before) || hasSession(old, after) {
		t.Errorf("imap.log holds:\n%s", old)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
}

// A start-up failure reaches the terminal as nginx prints it there, and
// the log file as a line, when the log is a file; once when the log is
// standard error.
func TestStartFailureOnTerminal(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	t.Run("log in a file", func(t *testing.T) {
		dir := t.TempDir()
		p := startBinary(t, "-c", logConf(t, dir, taken.Addr().String()))
		if code := p.exitCode(t); code != 1 {
			t.Fatalf("exit %d", code)
		}
		stderr, log := p.stderr.String(), readLog(t, filepath.Join(dir, "error.log"))
		if !strings.HasPrefix(stderr, "mailproxy: [emerg] cannot start, err: ") || !strings.Contains(stderr, "address already in use") {
			t.Errorf("stderr:\n%s", stderr)
		}
		if !strings.Contains(log, "[emerg] "+strconv.Itoa(p.cmd.Process.Pid)+"#0: cannot start, err: ") {
			t.Errorf("log:\n%s", log)
		}
	})
	t.Run("log on stderr", func(t *testing.T) {
		dir := t.TempDir()
		p := startBinary(t, "-c", logConf(t, dir, taken.Addr().String()), "-e", "stderr")
		if code := p.exitCode(t); code != 1 {
			t.Fatalf("exit %d", code)
		}
		if stderr := p.stderr.String(); strings.Count(stderr, "cannot start") != 1 || !strings.Contains(stderr, "[emerg] "+strconv.Itoa(p.cmd.Process.Pid)+"#0: cannot start") {
			t.Errorf("stderr:\n%s", stderr)
		}
	})
	t.Run("configuration error, -e file", func(t *testing.T) {
		dir := t.TempDir()
		conf := filepath.Join(dir, "bad.conf")
		os.WriteFile(conf, []byte("mail { bogus; }\n"), 0o644)
		p := startBinary(t, "-c", conf, "-e", "start.log")
		if code := p.exitCode(t); code != 1 {
			t.Fatalf("exit %d", code)
		}
		want := conf + `:1: unknown directive "bogus"`
		if stderr := p.stderr.String(); stderr != "mailproxy: [emerg] "+want+"\n" {
			t.Errorf("stderr %q", stderr)
		}
		if log := readLog(t, filepath.Join(dir, "start.log")); !strings.Contains(log, "[emerg] "+strconv.Itoa(p.cmd.Process.Pid)+"#0: "+want+"\n") {
			t.Errorf("log %q", log)
		}
	})
}

// error_log is obeyed from the start, in nginx's lines or JSON lines; -e
// replaces the main context's.
func TestErrorLogFromTheStart(t *testing.T) {
	tests := []struct {
		name string
		args func(conf string) []string
		src  string
		json bool
	}{
		{"nginx lines", func(conf string) []string { return []string{"-c", conf} }, "error_log stderr info;", false},
		{"JSON lines by flag", func(conf string) []string { return []string{"-c", conf, "-log-format", "json"} }, "error_log stderr info;", true},
		{"JSON lines by directive", func(conf string) []string { return []string{"-c", conf} }, "error_log stderr info; error_log_format json;", true},
		{"-e stderr", func(conf string) []string { return []string{"-c", conf, "-e", "stderr"} }, "error_log main.log info;", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			addr := testutil.FreeAddr(t)
			conf := filepath.Join(dir, "mail.conf")
			os.WriteFile(conf, []byte(tt.src+"\nmail { auth_http 127.0.0.1:9/auth; server { listen "+addr+"; protocol imap; } }\n"), 0o644)
			p := startProgram(t, tt.args(conf)...)
			testutil.WaitFor(t, "the listener", func() bool { return testutil.Accepting(addr) })
			c := testutil.Dial(t, "tcp", addr)
			c.Line()
			port := strconv.Itoa(c.Conn.LocalAddr().(*net.TCPAddr).Port)
			var line string
			testutil.WaitFor(t, "the session's line", func() bool {
				for _, l := range strings.Split(p.stderr.String(), "\n") {
					if strings.Contains(l, "client connected") && strings.Contains(l, port) {
						line = l
						return true
					}
				}
				return false
			})
			if tt.json {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil || m["level"] != "info" || m["client_port"] != json.Number(port) && fmt.Sprint(m["client_port"]) != port {
					t.Errorf("%q: %v", line, err)
				}
				return
			}
			l, err := testutil.ParseLogLine(line)
			if err != nil || l.Level != "info" || l.PID != os.Getpid() || l.Conn == "" || l.Attrs["server"] != addr {
				t.Errorf("%q read back as %+v, %v", line, l, err)
			}
			if got := readLog(t, filepath.Join(dir, "main.log")); got != "" {
				t.Errorf("-e stderr, and main.log holds %q", got)
			}
		})
	}
}

// -log-format takes nginx or json.
func TestLogFormatFlag(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-log-format", "yaml", "-demo-ports", "0,0,0"}, io.Discard, &stderr, nil); code != 1 || !strings.Contains(stderr.String(), `unknown log format "yaml"`) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
