package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
)

// buildProgram puts a copy of the program at path, for the tests that
// replace it.
func buildProgram(t *testing.T, path string) {
	t.Helper()
	copyFile(t, binary(t), path)
}

// copyFile copies the program to a new file at path.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// relayedIMAP starts an IMAP backend with the demo account and an
// auth_http service that sends every login to it, and returns the
// service's address.
func relayedIMAP(t *testing.T) string {
	t.Helper()
	backend, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: demoUser, Password: demoPassword}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	host, port, _ := net.SplitHostPort(backend.Addr)
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", host)
		w.Header().Set("Auth-Port", port)
	}))
	t.Cleanup(auth.Close)
	return strings.TrimPrefix(auth.URL, "http://")
}

func writeUpgradeConf(t *testing.T, path, pid, auth, addr, capability string) {
	t.Helper()
	conf := fmt.Sprintf(`error_log stderr info;
pid %s;
mail {
    auth_http %s/auth;
    server { listen %s; protocol imap; imap_capabilities IMAP4rev1 %s; }
}
`, pid, auth, addr, capability)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// notifications is systemd's end of NOTIFY_SOCKET: the states the
// processes send, one message each.
func notifications(t *testing.T, path string) <-chan string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	states := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			states <- string(buf[:n])
		}
	}()
	return states
}

// mainPID waits for a process to tell systemd it is ready, and returns its
// pid.
func mainPID(t *testing.T, states <-chan string) int {
	t.Helper()
	select {
	case s := <-states:
		pid, ok := strings.CutPrefix(s, "MAINPID=")
		pid, ready := strings.CutSuffix(pid, "\nREADY=1")
		n, err := strconv.Atoi(pid)
		if !ok || !ready || err != nil {
			t.Fatalf("notification %q", s)
		}
		return n
	case <-time.After(30 * time.Second):
		t.Fatal("no notification from the proxy")
		return 0
	}
}

// pidText is what the pid file at path holds.
func pidText(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// An upgrade as nginx's: on USR2 the old process starts the new binary,
// which accepts on the inherited socket next to it; on QUIT the old one
// stops accepting and drains its sessions. A client loop connecting all
// along is never refused nor left unanswered.
func TestBinaryUpgrade(t *testing.T) {
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("needs /proc to see which binary runs")
	}
	dir := t.TempDir()
	bin, conf, pid := filepath.Join(dir, "mailproxy"), filepath.Join(dir, "mail.conf"), filepath.Join(dir, "mail.pid")
	buildProgram(t, bin)
	auth, addr := relayedIMAP(t), testutil.FreeAddr(t)
	writeUpgradeConf(t, conf, pid, auth, addr, "OLD")
	states := notifications(t, filepath.Join(dir, "notify"))
	logPath := filepath.Join(dir, "stderr.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	logs := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	defer func() {
		if t.Failed() {
			t.Logf("the proxies' log:\n%s", logs())
		}
	}()

	old := exec.Command(bin, "-c", conf)
	old.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify"))
	old.Stdout, old.Stderr = logFile, logFile
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- old.Wait() }()
	t.Cleanup(func() { old.Process.Kill() })
	if got := mainPID(t, states); got != old.Process.Pid {
		t.Fatalf("ready from pid %d, want %d", got, old.Process.Pid)
	}

	// Sessions relayed to the backend by the old process.
	var sessions []*testutil.Client
	for range 3 {
		c := testutil.Dial(t, "tcp", addr)
		c.Conn.SetDeadline(time.Now().Add(time.Minute))
		c.Line()
		c.Cmd("a LOGIN demo demo", "a OK")
		sessions = append(sessions, c)
	}
	loop := testutil.StartConnLoop(addr, 4, "OLD", "NEW")
	defer loop.Stop()
	testutil.WaitFor(t, "the client loop", func() bool { return loop.Counts()["OLD"] > 50 })

	// A new binary in place of the old one, and a new configuration to
	// tell the two processes apart.
	copyFile(t, bin, bin+".new")
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	writeUpgradeConf(t, conf, pid, auth, addr, "NEW")
	upgraded := time.Now()
	old.Process.Signal(syscall.SIGUSR2)
	newPID := mainPID(t, states)
	handover := time.Since(upgraded)
	t.Cleanup(func() { syscall.Kill(newPID, syscall.SIGKILL) })
	if newPID == old.Process.Pid {
		t.Fatal("the old process notified again")
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", newPID)); exe != bin {
		t.Errorf("the new process runs %q, want the new binary %s", exe, bin)
	}
	if got, want := pidText(pid), strconv.Itoa(newPID); got != want {
		t.Errorf("pid file %q, want the new process's %s", got, want)
	}
	if got, want := pidText(pid+".oldbin"), strconv.Itoa(old.Process.Pid); got != want {
		t.Errorf("pid.oldbin %q, want the old process's %s", got, want)
	}
	// As in nginx, neither process starts another binary while both run.
	old.Process.Signal(syscall.SIGUSR2)
	syscall.Kill(newPID, syscall.SIGUSR2)
	testutil.WaitFor(t, "both upgrades to be refused", func() bool { return strings.Count(logs(), "binary upgrade ignored") == 2 })
	both := loop.Counts()
	testutil.WaitFor(t, "both processes to accept", func() bool {
		c := loop.Counts()
		return c["NEW"] > both["NEW"]+20 && c["OLD"] > both["OLD"]+20
	})
	if !strings.Contains(logs(), "listening on an inherited socket") {
		t.Error("the new process does not say it took the inherited socket")
	}

	// The old process stops accepting and drains.
	quit := time.Now()
	old.Process.Signal(syscall.SIGQUIT)
	alone := loop.Counts()
	testutil.WaitFor(t, "the new process to accept alone", func() bool {
		c := loop.Counts()
		if c["OLD"] != alone["OLD"] {
			alone = c
			return false
		}
		return c["NEW"] > alone["NEW"]+200
	})
	select {
	case err := <-exited:
		t.Fatalf("the old process exited (%v) with sessions open", err)
	default:
	}
	for i, c := range sessions {
		if got := c.Cmd(fmt.Sprintf("s%d SELECT INBOX", i), "s"); !strings.HasPrefix(got[len(got)-1], fmt.Sprintf("s%d OK", i)) {
			t.Errorf("session %d on the old process: %q", i, got)
		}
		c.Cmd("z LOGOUT", "z OK")
		c.Conn.Close()
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the old process exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the old process goes on after its sessions ended")
	}
	drained := time.Since(quit)
	if _, err := os.Stat(pid + ".oldbin"); !os.IsNotExist(err) {
		t.Errorf("pid.oldbin left behind (%v)", err)
	}
	if got, want := pidText(pid), strconv.Itoa(newPID); got != want {
		t.Errorf("pid file %q after the old process left, want %s", got, want)
	}

	counts := loop.Stop()
	attempts := 0
	for _, n := range counts {
		attempts += n
	}
	t.Logf("connections during the upgrade: %d, by outcome %v; new binary ready %v after USR2; old process gone %v after QUIT",
		attempts, counts, handover.Round(time.Millisecond), drained.Round(time.Millisecond))
	if len(counts) != 2 {
		t.Errorf("connections refused or unanswered: %v", counts)
	}
	select {
	case s := <-states:
		t.Errorf("a third process notified %q", s)
	default:
	}

	syscall.Kill(newPID, syscall.SIGTERM)
	testutil.WaitFor(t, "the new process to exit", func() bool { return pidText(pid) == "" })
}

// A process started by systemd's socket activation (LISTEN_FDS) serves the
// socket it was given rather than opening its own.
func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	bin, conf, pid := filepath.Join(dir, "mailproxy"), filepath.Join(dir, "mail.conf"), filepath.Join(dir, "mail.pid")
	buildProgram(t, bin)
	auth := relayedIMAP(t)
	states := notifications(t, filepath.Join(dir, "notify"))
	tests := []struct {
		name string
		// command runs bin -c conf on the socket at addr, passed as systemd
		// passes it.
		command func(t *testing.T, addr string) *exec.Cmd
	}{
		{"LISTEN_FDS", func(t *testing.T, addr string) *exec.Cmd {
			// Kept open here, the socket stays in use: the proxy cannot
			// bind it again, it can only serve it.
			ln, err := net.Listen("tcp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			f, err := ln.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			// LISTEN_PID is the pid of the shell, which exec keeps.
			cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=imap exec "$0" "$@"`, bin, "-c", conf)
			cmd.ExtraFiles = []*os.File{f}
			return cmd
		}},
		{"systemd-socket-activate", func(t *testing.T, addr string) *exec.Cmd {
			activate := testutil.LookPath(t, "systemd-socket-activate")
			// It starts the proxy on the first connection, as systemd does.
			return exec.Command(activate, "--listen", addr, "--fdname", "imap", "--setenv", "NOTIFY_SOCKET", bin, "-c", conf)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := testutil.FreeAddr(t)
			writeUpgradeConf(t, conf, pid, auth, addr, "ACTIVATED")
			cmd := tt.command(t, addr)
			cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify"))
			var stderr testutil.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("the proxy's log:\n%s", stderr.String())
				}
			})
			// The first client waits in the socket's queue until the proxy
			// serves it.
			var c *testutil.Client
			testutil.WaitFor(t, "the socket", func() bool {
				conn, err := net.Dial("tcp", addr)
				if err == nil {
					conn.Close()
				}
				return err == nil
			})
			c = testutil.Dial(t, "tcp", addr)
			if got := mainPID(t, states); got != cmd.Process.Pid {
				t.Errorf("ready from pid %d, want %d", got, cmd.Process.Pid)
			}
			testutil.WaitFor(t, "the proxy to say it took the socket", func() bool {
				return strings.Contains(stderr.String(), "listening on an inherited socket")
			})
			c.Line()
			if got := c.Cmd("a CAPABILITY", "a "); !strings.Contains(got[0], "ACTIVATED") {
				t.Errorf("CAPABILITY %q", got)
			}
			c.Cmd("b LOGIN demo demo", "b OK")
			c.Cmd("c SELECT INBOX", "c OK")
			cmd.Process.Signal(syscall.SIGTERM)
			if err := <-exited; err != nil {
				t.Errorf("exit: %v\n%s", err, stderr.String())
			}
			exited <- nil // for the cleanup
		})
	}
}

// When the new binary exits first, whether it cannot start or is stopped,
// the old one goes on with its pid file back, and may upgrade again.
func TestBinaryUpgradeRollback(t *testing.T) {
	dir := t.TempDir()
	bin, conf, pid := filepath.Join(dir, "mailproxy"), filepath.Join(dir, "mail.conf"), filepath.Join(dir, "mail.pid")
	buildProgram(t, bin)
	auth, addr := relayedIMAP(t), testutil.FreeAddr(t)
	states := notifications(t, filepath.Join(dir, "notify"))
	writeUpgradeConf(t, conf, pid, auth, addr, "OLD")
	old := exec.Command(bin, "-c", conf)
	old.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify"))
	var stderr testutil.Buffer
	old.Stderr = &stderr
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Process.Kill(); old.Wait() })
	oldPID := strconv.Itoa(old.Process.Pid)
	mainPID(t, states)
	tests := []struct {
		name string
		// upgrade has the old process start a new binary that exits.
		upgrade func(t *testing.T)
	}{
		{"the new binary cannot start", func(t *testing.T) {
			os.WriteFile(conf, []byte("mail { server { protocol nntp; } }"), 0o644)
			old.Process.Signal(syscall.SIGUSR2)
		}},
		{"the new binary is stopped", func(t *testing.T) {
			writeUpgradeConf(t, conf, pid, auth, addr, "NEW")
			old.Process.Signal(syscall.SIGUSR2)
			newPID := mainPID(t, states)
			if got := pidText(pid + ".oldbin"); got != oldPID {
				t.Errorf("pid.oldbin %q, want %s", got, oldPID)
			}
			syscall.Kill(newPID, syscall.SIGQUIT)
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.upgrade(t)
			testutil.WaitFor(t, "the new binary to exit", func() bool {
				return strings.Count(stderr.String(), "the new binary exited") == i+1
			})
			if got := pidText(pid); got != oldPID {
				t.Errorf("pid file %q, want the old process's %s", got, oldPID)
			}
			if _, err := os.Stat(pid + ".oldbin"); !os.IsNotExist(err) {
				t.Errorf("pid.oldbin left behind (%v)", err)
			}
			if got := capability(t, addr); !strings.Contains(got, "OLD") {
				t.Errorf("after the new binary exited, the proxy answers %q", got)
			}
		})
	}
}

// Started as root, the program starts the new binary of an upgrade as
// nginx's master does, as root, through its privileged helper: the new
// binary reads a key only root may read, writes its pid file and opens
// its log in a folder only root may write to, starts its own helper and
// switches user itself; USR1 then reopens its log through that helper.
// When the old process leaves, its helper removes pid.oldbin.
func TestBinaryUpgradeAsRoot(t *testing.T) {
	nobody := rootServingAsNobody(t)
	dir := t.TempDir()                                                                                                     // 0700, root's
	certFile, keyFile := testutil.NewCA(t, "mailproxy test").Issue(t, testutil.CertOptions{}).WriteFiles(t, dir, "server") // the key: 0600
	logPath, pid := filepath.Join(dir, "error.log"), filepath.Join(dir, "mail.pid")
	conf := imapConf{dir: dir, addr: testutil.FreeAddr(t), authURL: startAuth(t, startIMAPBackend(t)), capability: "OLD",
		main: "error_log " + logPath + " info;", server: "ssl_certificate " + certFile + "; ssl_certificate_key " + keyFile + "; starttls on;"}
	out, err := os.Create(filepath.Join(t.TempDir(), "stderr")) // a file, which the new process may keep open after the old one left
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	old := exec.Command(binary(t), "-c", conf.write(t))
	old.Stdout, old.Stderr = out, out
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- old.Wait() }()
	t.Cleanup(func() { old.Process.Kill() })
	defer func() {
		if t.Failed() {
			t.Logf("standard error:\n%s\nerror.log:\n%s", readLog(t, out.Name()), readLog(t, logPath))
		}
	}()
	serving := func(pid int) bool {
		uid := procStatus(t, pid)["Uid"]
		return len(uid) > 0 && uid[0] == nobody.Uid
	}
	testutil.WaitFor(t, "the old process to switch user", func() bool { return serving(old.Process.Pid) })

	conf.capability = "NEW"
	conf.write(t)
	old.Process.Signal(syscall.SIGUSR2)
	var newPID int
	testutil.WaitFor(t, "the new process's pid file", func() bool {
		newPID, _ = strconv.Atoi(pidText(pid))
		return newPID != 0 && newPID != old.Process.Pid
	})
	t.Cleanup(func() { syscall.Kill(newPID, syscall.SIGKILL) })
	testutil.WaitFor(t, "the new process to switch user", func() bool { return serving(newPID) })
	if parent := ppid(newPID); !isHelper(parent) || ppid(parent) != old.Process.Pid {
		t.Errorf("the new process's parent %d is not the old one's helper", parent)
	}
	if helpers := helpersOf(t, newPID); len(helpers) != 1 {
		t.Errorf("the new process has %d privileged helpers, want 1", len(helpers))
	}
	if got := pidText(pid + ".oldbin"); got != strconv.Itoa(old.Process.Pid) {
		t.Errorf("pid.oldbin %q, want the old process's %d", got, old.Process.Pid)
	}

	old.Process.Signal(syscall.SIGQUIT)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the old process exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old process goes on after QUIT")
	}
	testutil.WaitFor(t, "the old helper to remove pid.oldbin", func() bool {
		_, err := os.Stat(pid + ".oldbin")
		return os.IsNotExist(err)
	})
	if got := capability(t, conf.addr); !strings.Contains(got, "NEW") || !strings.Contains(got, "STARTTLS") {
		t.Errorf("the new process answers %q", got)
	}

	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(newPID, syscall.SIGUSR1)
	testutil.WaitFor(t, "a new error.log", func() bool { return strings.Contains(readLog(t, logPath), "logs reopened") })

	syscall.Kill(newPID, syscall.SIGTERM)
	testutil.WaitFor(t, "the new process's helper to remove the pid file", func() bool {
		_, err := os.Stat(pid)
		return os.IsNotExist(err)
	})
}

// ppid returns the parent of process pid; 0 when it is gone.
func ppid(pid int) int {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	_, rest, _ := strings.Cut(string(b), "\nPPid:")
	field, _, _ := strings.Cut(rest, "\n")
	n, _ := strconv.Atoi(strings.TrimSpace(field))
	return n
}

// isHelper reports whether process pid is a privileged helper.
func isHelper(pid int) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.HasPrefix(string(b), "mailproxy: privileged helper\x00")
}

// helpersOf returns the privileged helpers that process pid started.
func helpersOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var helpers []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && isHelper(n) && ppid(n) == pid {
			helpers = append(helpers, n)
		}
	}
	return helpers
}
