package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/mailproxy/mailproxy/config"
)

// wholeProcess is set by main: the program then acts on its whole process
// (its user, its limit of descriptors, its privileged helper), which the
// tests that call run inside their own process must not.
var wholeProcess bool

// process is what the program does to its own process: the pid file, the
// limit of descriptors, the switch to an unprivileged user after the
// sockets are open, and the privileged helper that does what needs root
// after that switch (helper.go).
type process struct {
	log    *slog.Logger
	pid    *pidFile    // nil in the demo
	cred   *credential // whom to serve as; nil to stay who we are
	helper *helper     // with cred in config mode
	// started holds the settings that only a restart changes.
	started restartOnly
}

// restartOnly are the settings of the main context that a reload cannot
// change.
type restartOnly struct {
	User, Group    string
	RlimitNofile   int
	MaxConnections int
}

func restartOnlyOf(cfg *config.Config) restartOnly {
	return restartOnly{cfg.User, cfg.Group, cfg.RlimitNofile, cfg.MaxConnections}
}

// startProcess prepares the process for serving cfg, before the proxy
// opens its sockets: the limit of descriptors, the pid file, and, when the
// program will switch user, the helper.
func startProcess(o *options, cfg *config.Config, log *slog.Logger) (*process, error) {
	p := &process{log: log, started: restartOnlyOf(cfg)}
	if cfg.RlimitNofile > 0 && wholeProcess {
		n, err := raiseFileLimit(cfg.RlimitNofile)
		if err != nil {
			log.Warn("cannot raise the limit of open descriptors", "err", err)
		} else {
			log.Info("limit of open descriptors raised", "worker_rlimit_nofile", n)
		}
	}
	var err error
	if p.cred, err = privileges(cfg.User, cfg.Group, log); err != nil {
		return nil, err
	}
	p.pid, err = writePIDFile(cfg.PID, func(err error) { log.Warn("no pid file (set one with the pid directive)", "err", err) })
	if err != nil {
		return nil, fmt.Errorf("cannot write pid file: %w", err)
	}
	if p.cred != nil {
		conf, _ := filepath.Abs(o.confPath())
		p.helper, err = startHelper(helperArgs{Conf: conf, Prefix: o.prefix, Globals: o.globals, ErrorLog: o.errorLog,
			PIDFile: p.pid.path, PID: p.pid.pid, Args: os.Args})
		if err != nil {
			p.pid.remove()
			return nil, err
		}
	}
	return p, nil
}

// startDemoProcess prepares the process for the demo: the switch of user
// only.
func startDemoProcess(log *slog.Logger) (*process, error) {
	cred, err := privileges("", "", log)
	return &process{log: log, cred: cred}, err
}

// switchUser switches to the unprivileged user, once the sockets are open.
func (p *process) switchUser() error {
	if p.cred == nil {
		return nil
	}
	if err := switchTo(p.cred); err != nil {
		return fmt.Errorf("cannot switch to user %q: %w", p.cred.user, err)
	}
	servingAs = p.cred
	p.log.Info("serving as an unprivileged user", "user", p.cred.user, "uid", p.cred.uid, "group", p.cred.group, "gid", p.cred.gid)
	return nil
}

// files returns what a reload reads the configuration's files through:
// the helper's reading after a switch of user, else the file system.
func (p *process) files() (config.Files, error) {
	if p.helper == nil {
		return nil, nil
	}
	return p.helper.files()
}

// launch starts the new binary of an upgrade with the listening sockets
// files: through the helper when there is one, so that it starts as root
// as this process did.
func (p *process) launch(files []*os.File) (*newBinary, error) {
	if p.helper != nil {
		return p.helper.upgrade(files)
	}
	return startNewBinary(os.Args, os.Environ(), files, p.pid)
}

// reloaded warns about the settings of cfg that only a restart changes.
func (p *process) reloaded(cfg *config.Config) {
	now := restartOnlyOf(cfg)
	for _, d := range []struct {
		name          string
		before, after any
	}{
		{"user", p.started.User + " " + p.started.Group, now.User + " " + now.Group},
		{"worker_rlimit_nofile", p.started.RlimitNofile, now.RlimitNofile},
		{"max_connections, worker_connections", p.started.MaxConnections, now.MaxConnections},
	} {
		if d.before != d.after {
			p.log.Warn("directive changed; it takes effect after a restart", "directive", d.name)
		}
	}
}

// exit removes the pid file (<pid>.oldbin while the new binary of an
// upgrade runs), through the helper when there is one.
func (p *process) exit() {
	switch {
	case p.helper != nil:
		if err := p.helper.Close(); err != nil {
			p.log.Warn("privileged helper", "err", err)
		}
	case p.pid != nil:
		if err := p.pid.remove(); err != nil {
			p.log.Warn("cannot remove pid file", "err", err)
		}
	}
}
