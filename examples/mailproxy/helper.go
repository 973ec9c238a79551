package main

import (
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"

	"github.com/mailproxy/mailproxy/config"
)

// The privileged helper is what stays root of a program that switched
// user, as nginx's master does: a process of the same executable, started
// before the switch, which reads the configuration and the files it names
// for each reload (certificates and keys only root may read, typically)
// and hands their content over, and which removes the pid file in a folder
// only root may write to when the program exits. It reads only the
// configuration the program was started with, and takes no other order.

// helperEnv makes the executable the helper: its value is the helperArgs,
// in JSON. The connection to the program is descriptor 3.
const helperEnv = "MAILPROXY_PRIVILEGED_HELPER"

// helperArgs is what the helper is started with.
type helperArgs struct {
	Conf, Prefix, Globals string // the configuration, as the program loads it
	PIDFile               string // removed at the program's exit when it still holds PID
	PID                   int
}

// helperReply answers a request: the files a load of the configuration
// read, by path, and the include patterns with their matches; or the
// error of that load.
type helperReply struct {
	Files map[string][]byte
	Globs map[string][]string
	Err   string
}

// helper is the program's end of the connection to its helper.
type helper struct {
	cmd  *exec.Cmd
	conn net.Conn
	mu   sync.Mutex // one request at a time
	enc  *gob.Encoder
	dec  *gob.Decoder
}

// startHelper starts the helper, which inherits the program's privileges.
func startHelper(args helperArgs) (*helper, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("privileged helper: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "helper"), os.NewFile(uintptr(fds[1]), "helper")
	defer ours.Close()
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	if err != nil {
		return nil, fmt.Errorf("privileged helper: %w", err)
	}
	value, _ := json.Marshal(args)
	cmd := exec.Command(selfExecutable())
	cmd.Args[0] = "mailproxy: privileged helper" // what ps shows
	cmd.Env = append(os.Environ(), helperEnv+"="+string(value))
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("privileged helper: %w", err)
	}
	return &helper{cmd: cmd, conn: conn, enc: gob.NewEncoder(conn), dec: gob.NewDecoder(conn)}, nil
}

// selfExecutable returns the executable the process runs: the same file
// even if a new version has replaced it on disk since.
func selfExecutable() string {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return "/proc/self/exe"
	}
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// files asks the helper to load the configuration and returns what the
// load read, for config.Load to read again.
func (h *helper) files() (config.Files, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.enc.Encode(true); err != nil {
		return nil, fmt.Errorf("privileged helper: %w", err)
	}
	var r helperReply
	if err := h.dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("privileged helper: %w", err)
	}
	if r.Err != "" {
		return nil, errors.New(r.Err)
	}
	return &filesRead{files: r.Files, globs: r.Globs}, nil
}

// Close ends the helper, which removes the pid file, and waits for it.
func (h *helper) Close() error {
	h.conn.Close()
	return h.cmd.Wait()
}

// runHelper is the helper's whole life: it answers the program's requests
// until the program closes the connection or exits. The signals sent to
// the program's process group (Ctrl-C, a service manager's TERM) are the
// program's to act on: the helper ends after it.
func runHelper(value string) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	var args helperArgs
	if err := json.Unmarshal([]byte(value), &args); err != nil {
		fmt.Fprintln(os.Stderr, "mailproxy: privileged helper:", err)
		return 1
	}
	f := os.NewFile(3, "helper")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailproxy: privileged helper:", err)
		return 1
	}
	defer func() {
		if err := removePID(args.PIDFile, args.PID); err != nil {
			fmt.Fprintln(os.Stderr, "mailproxy: privileged helper: pid file:", err)
		}
	}()
	enc, dec := gob.NewEncoder(conn), gob.NewDecoder(conn)
	for {
		var load bool
		if dec.Decode(&load) != nil {
			return 0 // the program is gone
		}
		if enc.Encode(args.load()) != nil {
			return 0
		}
	}
}

// load loads the configuration as the program would, recording the files
// it reads.
func (a helperArgs) load() helperReply {
	rec := &filesRead{files: map[string][]byte{}, globs: map[string][]string{}, record: true}
	cfg, err := config.Load(a.Conf, config.Options{Prefix: a.Prefix, Globals: a.Globals, Files: rec,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return helperReply{Err: err.Error()}
	}
	cfg.Close()
	return helperReply{Files: rec.files, Globs: rec.globs}
}

// filesRead holds the files a load read: it records them from the file
// system in the helper, and serves them to the program's load.
type filesRead struct {
	files  map[string][]byte
	globs  map[string][]string
	record bool
}

func (f *filesRead) ReadFile(path string) ([]byte, error) {
	if f.record {
		b, err := config.SystemFiles.ReadFile(path)
		if err == nil {
			f.files[path] = b
		}
		return b, err
	}
	if b, ok := f.files[path]; ok {
		return b, nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
}

func (f *filesRead) Glob(pattern string) ([]string, error) {
	if f.record {
		paths, err := config.SystemFiles.Glob(pattern)
		if err == nil {
			f.globs[pattern] = paths
		}
		return paths, err
	}
	return f.globs[pattern], nil
}

var _ config.Files = (*filesRead)(nil)
