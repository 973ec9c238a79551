package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
)

// The tests in this file and the others that run the program as its own
// process build it once.
var built struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binary returns the program, built with go build.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	built.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			built.err = err
			return
		}
		if built.dir, built.err = os.MkdirTemp("", "mailproxy-test-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "mailproxy")
		out, err := exec.Command(goBin, "build", "-o", built.path, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Skipf("cannot build the program: %v", built.err)
	}
	return built.path
}

// child is the program running as a process of its own.
type child struct {
	cmd    *exec.Cmd
	stderr testutil.Buffer
	stdout testutil.Buffer
	done   chan struct{}
	err    error
}

// startBinary runs the program with args; it is killed when the test
// ends, if it is still running.
func startBinary(t *testing.T, args ...string) *child {
	t.Helper()
	p := &child{cmd: exec.Command(binary(t), args...), done: make(chan struct{})}
	p.cmd.Stderr, p.cmd.Stdout = &p.stderr, &p.stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// signal sends sig and waits for the exit, at most limit, returning how
// long it took.
func (p *child) signal(t *testing.T, sig syscall.Signal, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	p.wait(t, limit)
	return time.Since(start)
}

// wait waits for the exit, at most limit, and checks it was clean.
func (p *child) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("exit: %v\n%s", p.err, p.stderr.String())
		}
	case <-time.After(limit):
		t.Fatalf("still running after %v; stderr:\n%s", limit, p.stderr.String())
	}
}

// exitCode waits for the exit, at most ten seconds, and returns its code.
func (p *child) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit; stderr:\n%s", p.stderr.String())
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	return 0
}

// exited reports whether the process has exited.
func (p *child) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startAuth starts an auth_http service that accepts demo/demo and sends
// every protocol to backend, and returns the auth_http URL.
func startAuth(t *testing.T, backend string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(backend)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Auth-User") != demoUser || r.Header.Get("Auth-Pass") != demoPassword {
			w.Header().Set("Auth-Status", "Invalid login or password")
			return
		}
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", host)
		w.Header().Set("Auth-Port", port)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/auth"
}

// startIMAPBackend starts an in-process IMAP backend with the demo
// account.
func startIMAPBackend(t *testing.T) string {
	t.Helper()
	be, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: demoUser, Password: demoPassword}}, Logger: testutil.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be.Addr
}

// imapConf is a configuration of one IMAP server on addr relaying the demo
// account through authURL, with extra main-context directives and an
// extra capability to tell reloads apart.
type imapConf struct {
	dir, addr, authURL, main, capability string
	server                               string // more directives for the server block
}

func (c imapConf) write(t *testing.T) string {
	t.Helper()
	path := filepath.Join(c.dir, "mail.conf")
	conf := fmt.Sprintf(`error_log stderr info;
pid %s;
%s
mail {
    auth_http %s;
    server {
        listen %s;
        protocol imap;
        imap_capabilities IMAP4rev1 %s;
        %s
    }
}
`, filepath.Join(c.dir, "mail.pid"), c.main, c.authURL, c.addr, c.capability, c.server)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
