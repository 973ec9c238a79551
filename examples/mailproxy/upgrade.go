package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/mailproxy/mailproxy"
)

// upgrader replaces the binary without closing a socket, as nginx does on
// SIGUSR2: it starts the executable again, with the same arguments and
// the listening sockets (named in inheritEnv), and renames the pid file to
// <pid>.oldbin for the new binary to write its own. Both then accept on
// the same sockets, until the old binary is told to stop (QUIT drains its
// sessions). When the new binary exits first, the pid file gets its name
// back and this one goes on alone. A program that switched user has its
// privileged helper start the new binary (launch), which thus starts as
// root, as this one did.
type upgrader struct {
	proxy  *mailproxy.Proxy
	launch func(files []*os.File) (*newBinary, error)
	// parent is the process that started this one in an upgrade (the old
	// binary, or its privileged helper), 0 otherwise: its exit means the
	// old binary is gone. As in nginx, a new binary whose old one still
	// runs starts no other.
	parent int
	log    *slog.Logger
	sigs   chan os.Signal

	mu      sync.Mutex
	child   *newBinary // the new binary, while it runs
	stopped bool
}

// newBinary is the new binary of an upgrade.
type newBinary struct {
	pid  int
	path string // its executable
	// wait waits for its exit and returns its status, once the pid file
	// has its name back; the error is the failure to give it back.
	wait func() (status string, err error)
}

// startUpgrader upgrades p's binary on each SIGUSR2 until stop, starting
// the new binary with launch.
func startUpgrader(p *mailproxy.Proxy, launch func([]*os.File) (*newBinary, error), parent int, log *slog.Logger) *upgrader {
	u := &upgrader{proxy: p, launch: launch, parent: parent, log: log, sigs: make(chan os.Signal, 1)}
	signal.Notify(u.sigs, syscall.SIGUSR2)
	go func() {
		for range u.sigs {
			u.upgrade()
		}
	}()
	return u
}

func (u *upgrader) stop() {
	signal.Stop(u.sigs)
	close(u.sigs)
	u.mu.Lock()
	u.stopped = true
	u.mu.Unlock()
}

func (u *upgrader) upgrade() {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.child != nil:
		u.log.Warn("binary upgrade ignored: the new binary still runs; stop it or this one first", "new", u.child.pid)
		return
	case u.parent != 0 && os.Getppid() == u.parent:
		u.log.Warn("binary upgrade ignored: the old binary still runs; stop it first (QUIT)")
		return
	}
	files, err := u.proxy.Files()
	if err == nil {
		u.child, err = u.launch(files)
		for _, f := range files {
			f.Close()
		}
	}
	if err != nil {
		u.log.Error("binary upgrade failed; this binary goes on", "err", err)
		return
	}
	u.log.Info("binary upgrade: new binary started", "new", u.child.pid, "path", u.child.path)
	go u.wait(u.child)
}

// wait waits for the new binary to exit: this one then goes on alone.
func (u *upgrader) wait(b *newBinary) {
	status, err := b.wait()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.child = nil
	if u.stopped {
		return // this one is leaving too
	}
	if err != nil {
		u.log.Error("cannot restore the pid file", "err", err)
	}
	u.log.Warn("the new binary exited; this one goes on", "new", b.pid, "status", status)
}

// startNewBinary starts the executable as the new binary of an upgrade,
// with the command line args, the environment env and the listening
// sockets files, and the pid file renamed out of its way.
func startNewBinary(args, env []string, files []*os.File, pid *pidFile) (*newBinary, error) {
	exe, err := os.Executable() // the file now at the path this one was started from
	if err != nil {
		return nil, err
	}
	var fds strings.Builder
	for i := range files {
		fmt.Fprintf(&fds, "%d;", 3+i)
	}
	cmd := exec.Command(exe)
	cmd.Args = args
	cmd.Env = append(env, inheritEnv+"="+fds.String())
	cmd.ExtraFiles = files
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := pid.setOldbin(true); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		pid.setOldbin(false)
		return nil, err
	}
	return &newBinary{pid: cmd.Process.Pid, path: exe, wait: func() (string, error) {
		cmd.Wait()
		return cmd.ProcessState.String(), pid.setOldbin(false)
	}}, nil
}
