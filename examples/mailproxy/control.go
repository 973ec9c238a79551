package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/mailproxy/mailproxy/config"
)

// defaultPID is the pid file without a pid directive, as Debian's nginx
// has /run/nginx.pid compiled in; change it at build time with -ldflags
// "-X main.defaultPID=…".
var defaultPID = "/run/mailproxy.pid"

// controlSignals are nginx's -s commands and the signals they send.
var controlSignals = map[string]syscall.Signal{
	"stop":   syscall.SIGTERM,
	"quit":   syscall.SIGQUIT,
	"reopen": syscall.SIGUSR1,
	"reload": syscall.SIGHUP,
}

// signalProcess is -s: it sends the running proxy, named by the pid file
// of the configuration (or the default one), the command's signal.
func signalProcess(o *options, stderr io.Writer) int {
	sig, ok := controlSignals[o.signal]
	if !ok {
		fmt.Fprintf(stderr, "mailproxy: invalid option: \"-s %s\" (stop, quit, reopen or reload)\n", o.signal)
		return 1
	}
	path := defaultPID
	if o.conf != "" {
		cfg, err := config.LoadMain(o.confPath(), config.Options{Prefix: o.prefix, Globals: o.globals})
		if err != nil {
			fmt.Fprintf(stderr, "mailproxy: [emerg] %v\n", err)
			return 1
		}
		if cfg.PID != "" {
			path = cfg.PID
		}
	}
	pid, err := readPID(path)
	if err != nil {
		fmt.Fprintf(stderr, "mailproxy: [error] %v\n", err)
		return 1
	}
	if err := syscall.Kill(pid, sig); err != nil {
		fmt.Fprintf(stderr, "mailproxy: [alert] kill(%d, %s) failed: %v\n", pid, sig, err)
		return 1
	}
	return 0
}

// readPID reads the process number in a pid file.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("invalid PID number %q in %q", bytes.TrimSpace(b), path)
	}
	return pid, nil
}

// pidFile is the pid file of the running program.
type pidFile struct {
	path string // empty when none was written
	pid  int

	mu     sync.Mutex
	oldbin bool // renamed to <path>.oldbin while the new binary of an upgrade runs
}

// writePIDFile writes the process number to path, or, when path is empty,
// to the default pid file: a failure to write the default one (the
// program is not root) is only a warning, with the path in warn.
func writePIDFile(path string, warn func(err error)) (*pidFile, error) {
	f := &pidFile{path: path, pid: os.Getpid()}
	if path == "" {
		f.path = defaultPID
	}
	err := os.WriteFile(f.path, []byte(strconv.Itoa(f.pid)+"\n"), 0o644)
	switch {
	case err == nil:
		return f, nil
	case path == "":
		warn(err)
		return &pidFile{}, nil
	}
	return nil, err
}

// setOldbin renames the pid file to <path>.oldbin, out of the way of the
// new binary of an upgrade (old true), or gives it its name back.
func (f *pidFile) setOldbin(old bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.path == "" || f.oldbin == old {
		return nil
	}
	from, to := f.path, f.path+".oldbin"
	if !old {
		from, to = to, from
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	f.oldbin = old
	return nil
}

// remove removes the pid file, under its name of the moment, unless
// another process has written its own there since. The file is then left
// alone: a new binary exiting later does not rename it back.
func (f *pidFile) remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := f.path
	if f.oldbin {
		path += ".oldbin"
	}
	f.path = ""
	return removePID(path, f.pid)
}

// removePID removes the pid file at path if it still holds pid.
func removePID(path string, pid int) error {
	if path == "" {
		return nil
	}
	if have, err := readPID(path); err != nil || have != pid {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.Remove(path)
}
