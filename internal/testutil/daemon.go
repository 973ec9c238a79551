//go:build unix

package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// daemon is what a private server for tests (Dovecot, Postfix) needs
// around its own configuration: a folder of its own, its log, fresh
// ports, and a process group to start and stop.
type daemon struct {
	name string // for messages: "dovecot"
	dir  string // the instance folder
	log  string // the server's own log, a file in dir
}

// newDaemon makes the folder of an instance of the server name, whose log
// will be the file log in it. The folder goes when the test ends; if the
// test failed, its log and the command's output are logged first.
func newDaemon(t testing.TB, name, log string) *daemon {
	t.Helper()
	// Our own folder rather than t.TempDir: the server's unprivileged
	// processes must be able to enter it (t.TempDir's parent is 0700),
	// and unix sockets under it need a short path.
	dir, err := os.MkdirTemp("", name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{name: name, dir: dir, log: log}
	// Registered before any stop, so it runs after it, on the whole log.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s %s", name, d.logs())
		}
	})
	return d
}

// logContains reports whether the server's log has s.
func (d *daemon) logContains(s string) bool {
	b, _ := os.ReadFile(filepath.Join(d.dir, d.log))
	return bytes.Contains(b, []byte(s))
}

// logs returns the command's output and the server's log, for failure
// messages.
func (d *daemon) logs() string {
	var b strings.Builder
	for _, name := range []string{"stderr.log", d.log} {
		data, _ := os.ReadFile(filepath.Join(d.dir, name))
		fmt.Fprintf(&b, "--- %s\n%s", name, data)
	}
	return b.String()
}

// writeTemplate writes a configuration file, tmpl executed on data, with
// a modification time a minute ago. Postfix does not trust a file changed
// in the last second (it may be half written): it rereads it every 300ms
// until it is older, which would add two seconds to every start.
func writeTemplate(path string, tmpl *template.Template, data any) error {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return err
	}
	old := time.Now().Add(-time.Minute)
	return os.Chtimes(path, old, old)
}

// startOnFreePorts calls start with n distinct 127.0.0.1 ports that were
// free a moment ago, and stops the server it started when the test ends.
// Another process may take a port before the server binds it, so a start
// that fails with "Address already in use" in the logs gets fresh ports,
// three times at most; any other failure fails the test.
func (d *daemon) startOnFreePorts(t testing.TB, n int, start func(ports []int) (stop func(), err error)) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(n)
		if err != nil {
			t.Fatal(err)
		}
		stop, err := start(ports)
		if err == nil {
			t.Cleanup(stop)
			return
		}
		if attempt < 3 && strings.Contains(d.logs(), "Address already in use") {
			t.Logf("%s: port taken, retrying: %v", d.name, err)
			continue
		}
		t.Fatalf("%s: %v", d.name, err) // the cleanup of newDaemon shows the logs
	}
}

// freePorts returns n distinct 127.0.0.1 TCP ports that were free a moment
// ago: all n listeners are open at once, so no two are the same.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// process is a server's command, running in a process group of its own.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the command has exited
	err    error         // Wait's, once exited is closed
}

// run starts the command args in the instance folder, in a process group
// of its own. Its output goes to stderr.log: before the server's log
// takes over, errors (a bad setting) go there. A file rather than a pipe,
// so that Wait returns when the command exits whatever its children
// hold. Both logs start empty on every run.
func (d *daemon) run(args ...string) (*process, error) {
	if err := os.Remove(filepath.Join(d.dir, d.log)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(d.dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = d.dir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitForLog waits, for ten seconds at most, until the server's log has
// line, and fails if p exits first.
func (d *daemon) waitForLog(p *process, line string) error {
	deadline := time.Now().Add(10 * time.Second)
	for !d.logContains(line) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during start-up: %v", p.cmd, p.err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q in the log after 10s", strings.TrimSpace(line))
		}
	}
	return nil
}

// stop ends p. Unless the command has exited already, terminate asks the
// server to end and returns the process groups, besides the command's
// own, that belong to it. Once the command has exited, or after grace,
// every one of those groups gets SIGKILL: anything of them still there is
// gone.
func (p *process) stop(grace time.Duration, terminate func() (groups []int)) {
	groups := []int{p.cmd.Process.Pid}
	select {
	case <-p.exited:
	default:
		groups = append(groups, terminate()...)
	}
	select {
	case <-p.exited:
	case <-time.After(grace):
		killGroups(groups)
		<-p.exited
	}
	killGroups(groups)
}

func killGroups(groups []int) {
	for _, g := range groups {
		syscall.Kill(-g, syscall.SIGKILL)
	}
}
