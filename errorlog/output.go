package errorlog

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Outputs opens the targets of error logs by name, and keeps one file or
// socket for each name however many logs, and however many loaded
// configurations, write to it. Reopen reopens every file after a log
// rotation. The zero value is ready to use.
type Outputs struct {
	// Stderr is where the target "stderr" writes; nil means os.Stderr.
	Stderr io.Writer
	// OpenFile opens a file target, at Open and at each Reopen. Nil means
	// OpenFile (the package's function). A program that gave up its
	// privileges sets it to open its files through a process that kept
	// them, as nginx's master opens the files its workers write.
	OpenFile func(name string) (*os.File, error)

	mu   sync.Mutex
	open map[string]*target
}

// Output is one use of an opened target: an io.Writer for NewHandler.
// Close ends the use; the file or socket is closed with the last one.
type Output struct {
	s    *Outputs
	t    *target
	once sync.Once
}

// target is an opened file, socket or writer, shared by the Outputs that
// name it.
type target struct {
	name string
	refs int // guarded by Outputs.mu

	mu     sync.RWMutex // Reopen swaps file under the write lock
	file   *os.File     // a file
	closed bool         // after the last use: Reopen leaves it alone
	w      io.Writer    // standard error
	sys    *syslogConn  // a syslog server
}

// Open opens the target of an error_log: "stderr", "syslog:" and its
// parameters (see ParseSyslog), or the name of a file, opened for
// appending and created if needed. A target opened already is shared.
// nginx's "memory:" buffer is refused.
func (s *Outputs) Open(name string) (*Output, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.open[name]; ok {
		t.refs++
		return &Output{s: s, t: t}, nil
	}
	t := &target{name: name, refs: 1}
	switch {
	case name == "stderr":
		t.w = s.Stderr
		if t.w == nil {
			t.w = os.Stderr
		}
	case strings.HasPrefix(name, "syslog:"):
		cfg, err := ParseSyslog(strings.TrimPrefix(name, "syslog:"))
		if err != nil {
			return nil, err
		}
		if t.sys, err = dialSyslog(cfg); err != nil {
			return nil, err
		}
	case strings.HasPrefix(name, "memory:"):
		return nil, errors.New(`"memory:" logs (nginx's debugging buffer) are not supported`)
	case name == "":
		return nil, errors.New("empty log file name")
	default:
		f, err := s.openFile(name)
		if err != nil {
			return nil, err
		}
		t.file = f
	}
	if s.open == nil {
		s.open = make(map[string]*target)
	}
	s.open[name] = t
	return &Output{s: s, t: t}, nil
}

// OpenFile opens the file of an error log as Outputs does by default: for
// appending, created with mode 0644 if absent.
func OpenFile(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

func (s *Outputs) openFile(name string) (*os.File, error) {
	if s.OpenFile != nil {
		return s.OpenFile(name)
	}
	return OpenFile(name)
}

// Reopen opens every file again under its name, and closes the old
// descriptor: after logrotate renamed a file, lines go to a new one.
// A file that cannot be opened again stays as it was; its error is
// returned, with the others'.
func (s *Outputs) Reopen() error {
	s.mu.Lock()
	var files []*target
	for _, t := range s.open {
		if t.file != nil {
			files = append(files, t)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, t := range files {
		errs = append(errs, t.reopen(s.openFile))
	}
	return errors.Join(errs...)
}

func (t *target) reopen(open func(string) (*os.File, error)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	f, err := open(t.name)
	if err != nil {
		return err
	}
	old := t.file
	t.file = f
	return old.Close()
}

// release ends one use of t, closing it after the last.
func (s *Outputs) release(t *target) error {
	s.mu.Lock()
	t.refs--
	last := t.refs == 0
	if last {
		delete(s.open, t.name)
	}
	s.mu.Unlock()
	if !last {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	switch {
	case t.file != nil:
		return t.file.Close()
	case t.sys != nil:
		return t.sys.close()
	}
	return nil
}

// String returns the target's name.
func (o *Output) String() string { return o.t.name }

// Write writes p as a line at level info: its syslog severity, unless
// the target fixes one.
func (o *Output) Write(p []byte) (int, error) {
	if err := o.writeLine(time.Now(), LevelInfo, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (o *Output) writeLine(t time.Time, level slog.Level, line []byte) error {
	tg := o.t
	switch {
	case tg.sys != nil:
		return tg.sys.send(t, level, line)
	case tg.w != nil:
		tg.mu.Lock() // a writer that is not a file may not take concurrent writes
		defer tg.mu.Unlock()
		_, err := tg.w.Write(line)
		return err
	}
	tg.mu.RLock()
	defer tg.mu.RUnlock()
	_, err := tg.file.Write(line)
	return err
}

// Close ends this use of the target; the last use closes its file or
// socket. Standard error is never closed. Close may be called more than
// once.
func (o *Output) Close() error {
	err := error(nil)
	o.once.Do(func() { err = o.s.release(o.t) })
	return err
}
