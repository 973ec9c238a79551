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
// back and this one goes on alone.
type upgrader struct {
	proxy *mailproxy.Proxy
	pid   string // the pid file; "" for none
	// parent is the old binary that started this one in an upgrade, 0
	// otherwise. As in nginx, a new binary whose old one still runs starts
	// no other.
	parent int
	log    *slog.Logger
	sigs   chan os.Signal

	mu    sync.Mutex
	child *os.Process // the new binary, while it runs
}

// startUpgrader upgrades p's binary on each SIGUSR2 until stop.
func startUpgrader(p *mailproxy.Proxy, pid string, parent int, log *slog.Logger) *upgrader {
	u := &upgrader{proxy: p, pid: pid, parent: parent, log: log, sigs: make(chan os.Signal, 1)}
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
}

// pidFile is this process's pid file now: <pid>.oldbin while its new
// binary runs.
func (u *upgrader) pidFile() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.child != nil {
		return u.pid + ".oldbin"
	}
	return u.pid
}

func (u *upgrader) upgrade() {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.child != nil:
		u.log.Warn("binary upgrade ignored: the new binary still runs; stop it or this one first", "new", u.child.Pid)
		return
	case u.parent != 0 && os.Getppid() == u.parent:
		u.log.Warn("binary upgrade ignored: the old binary still runs; stop it first (QUIT)", "old", u.parent)
		return
	}
	cmd, err := u.start()
	if err != nil {
		u.log.Error("binary upgrade failed; this binary goes on", "err", err)
		return
	}
	u.child = cmd.Process
	u.log.Info("binary upgrade: new binary started", "new", cmd.Process.Pid, "path", cmd.Path)
	go u.wait(cmd)
}

// start starts the new binary with the listening sockets, the pid file
// renamed out of its way.
func (u *upgrader) start() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	files, err := u.proxy.Files()
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var fds strings.Builder
	for i := range files {
		fmt.Fprintf(&fds, "%d;", 3+i)
	}
	cmd := exec.Command(exe)
	cmd.Args = os.Args
	cmd.Env = append(os.Environ(), inheritEnv+"="+fds.String())
	cmd.ExtraFiles = files
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if u.pid != "" {
		if err := os.Rename(u.pid, u.pid+".oldbin"); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		if u.pid != "" {
			os.Rename(u.pid+".oldbin", u.pid)
		}
		return nil, err
	}
	return cmd, nil
}

// wait reaps the new binary. If it exits while this one runs, the pid file
// is this one's again.
func (u *upgrader) wait(cmd *exec.Cmd) {
	cmd.Wait()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.child = nil
	if u.pid != "" {
		if rerr := os.Rename(u.pid+".oldbin", u.pid); rerr != nil {
			u.log.Error("cannot restore the pid file", "err", rerr)
		}
	}
	u.log.Warn("the new binary exited; this one goes on", "new", cmd.Process.Pid, "status", cmd.ProcessState.String())
}
