package main

import (
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/mailproxy/mailproxy/config"
	"github.com/mailproxy/mailproxy/errorlog"
)

// The privileged helper is what stays root of a program that switched
// user, as nginx's master does: a process of the same executable, started
// before the switch, connected to the program by a unix socket. It takes
// three requests, each for the configuration the program was started with
// and for nothing else:
//
//   - load: it loads the configuration as the program would, reading the
//     files it names (certificates and keys only root may read,
//     typically), and hands their content over for a reload;
//   - open a log: it opens a file that an error_log of the configuration
//     names (as it stood at the helper's start or at a load since), for
//     appending, and passes the descriptor over;
//   - upgrade: it starts the executable again as the new binary of an
//     upgrade (USR2), with the program's command line and the listening
//     sockets the program passes over, renaming the pid file to
//     <pid>.oldbin meanwhile, and reports the new binary's exit.
//
// When the program exits, it removes the pid file, in a folder only root
// may write to.

// helperEnv makes the executable the helper: its value is the helperArgs,
// in JSON. The connection to the program is descriptor 3.
const helperEnv = "MAILPROXY_PRIVILEGED_HELPER"

// helperArgs is what the helper is started with: all it acts on.
type helperArgs struct {
	Conf, Prefix, Globals, ErrorLog string // the configuration, as the program loads it (-c, -p, -g, -e)
	PIDFile                         string // removed at the program's exit when it still holds PID
	PID                             int
	Args                            []string // the program's command line, for the new binary of an upgrade
}

// helperOp is a request's kind.
type helperOp uint8

const (
	opLoad    helperOp = iota // load the configuration: the files it reads
	opOpenLog                 // open a log file of the configuration
	opUpgrade                 // start the new binary with the sockets sent along
)

// helperRequest is a request to the helper.
type helperRequest struct {
	Op   helperOp
	Path string // opOpenLog
}

// helperReply answers a request, or says why it was refused (Err).
type helperReply struct {
	// opLoad: the files the load read, by path, and the include patterns
	// with their matches.
	Files map[string][]byte
	Globs map[string][]string
	// opUpgrade: the new binary's process and executable; a pipe comes
	// along, on which its upgradeExit follows.
	PID  int
	Path string
	Err  string
}

// upgradeExit reports the exit of the new binary of an upgrade: its
// status, and the failure to give the pid file its name back.
type upgradeExit struct {
	Status, Err string
}

// helper is the program's end of the connection to its helper.
type helper struct {
	cmd  *exec.Cmd
	mu   sync.Mutex // one request at a time
	conn *fdConn
}

// startHelper starts the helper, which inherits the program's privileges
// and standard files.
func startHelper(args helperArgs) (*helper, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("privileged helper: socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "helper"), os.NewFile(uintptr(fds[1]), "helper")
	defer ours.Close()
	defer theirs.Close()
	conn, err := fdConnOf(ours, maxReply)
	if err != nil {
		return nil, fmt.Errorf("privileged helper: %w", err)
	}
	value, _ := json.Marshal(args)
	cmd := exec.Command(selfExecutable())
	cmd.Args[0] = "mailproxy: privileged helper" // what ps shows
	cmd.Env = append(os.Environ(), helperEnv+"="+string(value))
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("privileged helper: %w", err)
	}
	return &helper{cmd: cmd, conn: conn}, nil
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

// call sends the helper req with files, and returns its reply and the
// files that came with it, named name. A refusal is an error.
func (h *helper) call(req helperRequest, files []*os.File, name string) (*helperReply, []*os.File, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.conn.send(req, files...); err != nil {
		return nil, nil, fmt.Errorf("privileged helper: %w", err)
	}
	var r helperReply
	got, err := h.conn.receive(&r, name)
	if err != nil {
		return nil, nil, fmt.Errorf("privileged helper: %w", err)
	}
	if r.Err != "" {
		closeFiles(got)
		return nil, nil, errors.New(r.Err)
	}
	return &r, got, nil
}

// oneFile returns the only file of files, or an error.
func oneFile(files []*os.File) (*os.File, error) {
	if len(files) != 1 {
		closeFiles(files)
		return nil, fmt.Errorf("privileged helper: %d descriptors in a reply, want 1", len(files))
	}
	return files[0], nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// files asks the helper to load the configuration and returns what the
// load read, for config.Load to read again.
func (h *helper) files() (config.Files, error) {
	r, got, err := h.call(helperRequest{Op: opLoad}, nil, "")
	if err != nil {
		return nil, err
	}
	closeFiles(got)
	return &filesRead{files: r.Files, globs: r.Globs}, nil
}

// openLog has the helper open a log file of the configuration.
func (h *helper) openLog(path string) (*os.File, error) {
	_, got, err := h.call(helperRequest{Op: opOpenLog, Path: path}, nil, path)
	if err != nil {
		return nil, err
	}
	return oneFile(got)
}

// upgrade has the helper start the new binary of an upgrade with the
// listening sockets files.
func (h *helper) upgrade(files []*os.File) (*newBinary, error) {
	r, got, err := h.call(helperRequest{Op: opUpgrade}, files, "new binary's exit")
	if err != nil {
		return nil, err
	}
	exited, err := oneFile(got)
	if err != nil {
		return nil, err
	}
	return &newBinary{pid: r.PID, path: r.Path, wait: func() (string, error) {
		defer exited.Close()
		var e upgradeExit
		if err := gob.NewDecoder(exited).Decode(&e); err != nil {
			return "unknown", fmt.Errorf("privileged helper: the new binary's exit: %w", err)
		}
		if e.Err != "" {
			return e.Status, errors.New(e.Err)
		}
		return e.Status, nil
	}}, nil
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
	conn, err := fdConnOf(f, maxRequest)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailproxy: privileged helper:", err)
		return 1
	}
	s := newPrivileged(args)
	defer func() {
		if err := s.pid.remove(); err != nil {
			fmt.Fprintln(os.Stderr, "mailproxy: privileged helper: pid file:", err)
		}
	}()
	s.serve(conn)
	return 0
}

// privileged is the helper's state.
type privileged struct {
	args helperArgs
	pid  *pidFile

	// logs are the files of the error logs of every configuration loaded
	// (absolute paths): those the program may ask for.
	logs map[string]bool

	mu        sync.Mutex
	upgrading bool // while the new binary of an upgrade runs
}

// newPrivileged loads the configuration a first time, for the log files
// of the one the program runs.
func newPrivileged(args helperArgs) *privileged {
	s := &privileged{args: args, pid: &pidFile{path: args.PIDFile, pid: args.PID}, logs: map[string]bool{}}
	if r := s.load(); r.Err != "" {
		fmt.Fprintln(os.Stderr, "mailproxy: privileged helper:", r.Err)
	}
	return s
}

// serve answers requests on conn until the program is gone.
func (s *privileged) serve(conn *fdConn) {
	defer conn.Close()
	for {
		var req helperRequest
		files, err := conn.receive(&req, "socket")
		if err != nil {
			return // the program is gone
		}
		reply, out := s.handle(req, files)
		closeFiles(files)
		err = conn.send(reply, out...)
		closeFiles(out)
		if err != nil {
			return
		}
	}
}

// handle answers one request; files came with it.
func (s *privileged) handle(req helperRequest, files []*os.File) (*helperReply, []*os.File) {
	var (
		reply = &helperReply{}
		out   *os.File
		err   error
	)
	switch req.Op {
	case opLoad:
		r := s.load()
		reply = &r
	case opOpenLog:
		out, err = s.openLog(req.Path)
	case opUpgrade:
		reply, out, err = s.upgrade(files)
	default:
		err = fmt.Errorf("privileged helper: unknown request %d", req.Op)
	}
	if err != nil {
		return &helperReply{Err: err.Error()}, nil
	}
	if out != nil {
		return reply, []*os.File{out}
	}
	return reply, nil
}

// load loads the configuration as the program would, recording the files
// it reads and the log files it names, which it does not open.
func (s *privileged) load() helperReply {
	rec := &filesRead{files: map[string][]byte{}, globs: map[string][]string{}, record: true}
	var logs []string
	outputs := &errorlog.Outputs{OpenFile: func(name string) (*os.File, error) {
		logs = append(logs, name)
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}}
	cfg, err := config.Load(s.args.Conf, config.Options{Prefix: s.args.Prefix, Globals: s.args.Globals, ErrorLog: s.args.ErrorLog,
		Files: rec, Outputs: outputs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return helperReply{Err: err.Error()}
	}
	cfg.Close()
	for _, name := range logs {
		if abs, err := filepath.Abs(name); err == nil {
			s.logs[abs] = true
		}
	}
	return helperReply{Files: rec.files, Globs: rec.globs}
}

// openLog opens a log file of the configuration for appending, creating
// it if needed (mode 0644, root's, as nginx's master creates them). The
// program may write in the log's folder: a symbolic link or a second hard
// link planted in the file's place there is refused, so that it never
// gets another file of root's.
func (s *privileged) openLog(path string) (*os.File, error) {
	abs, err := filepath.Abs(path)
	if err != nil || !s.logs[abs] {
		return nil, fmt.Errorf("privileged helper: %q is not a log file of the configuration", path)
	}
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("privileged helper: log file %s is a symbolic link: not opened after the switch of user", path)
	}
	if err != nil {
		return nil, err
	}
	if err := checkLogFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("privileged helper: log file %s %w: not opened after the switch of user", path, err)
	}
	return f, nil
}

// checkLogFile refuses a file that is not regular or has other links.
func checkLogFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("is not a regular file")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return fmt.Errorf("has %d hard links", st.Nlink)
	}
	return nil
}

// upgrade starts the new binary with the listening sockets files, and
// returns with its process the end of a pipe on which its upgradeExit
// comes.
func (s *privileged) upgrade(files []*os.File) (*helperReply, *os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.upgrading {
		return nil, nil, errors.New("privileged helper: the new binary still runs")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	b, err := startNewBinary(s.args.Args, programEnv(), files, s.pid)
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	s.upgrading = true
	go func() {
		defer w.Close()
		status, err := b.wait()
		s.mu.Lock()
		s.upgrading = false
		s.mu.Unlock()
		e := upgradeExit{Status: status}
		if err != nil {
			e.Err = err.Error()
		}
		gob.NewEncoder(w).Encode(e)
	}()
	return &helperReply{PID: b.pid, Path: b.path}, r, nil
}

// programEnv is the helper's environment without what made it the
// helper: the program's.
func programEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, helperEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
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
