package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mailproxy/mailproxy/config"
	"github.com/mailproxy/mailproxy/errorlog"
)

// logs are the program's error logs.
//
// While the program starts, its messages go to the start-up log (the
// target of -e, if any) and, at warn and above, to standard error as
// nginx prints them there ("mailproxy: [emerg] …"): a failure is seen on
// the terminal whatever the log. Once a configuration is loaded, its main
// log takes over (use); once the proxy serves (started), standard error
// gets only what the logs send there. SIGUSR1 reopens every file of every
// configuration still running (reopen).
type logs struct {
	outputs *errorlog.Outputs
	format  errorlog.Format
	// log writes to the main log in force and, while starting, to the
	// terminal.
	log      *slog.Logger
	main     atomic.Pointer[slog.Handler]
	terminal atomic.Bool
	// held are references to the targets of the main log in force: they
	// stay open until the next main log has taken over, whenever the
	// configuration that opened them is closed.
	mu   sync.Mutex
	held []*errorlog.Output
	// helper opens the log files once the program has switched user (the
	// files of a reload, and those of USR1): nil before.
	helper atomic.Pointer[helper]
}

// openLogs opens the start-up log at level: -e's target, else def ("" for
// none).
func (o *options) openLogs(stderr io.Writer, level slog.Level, def string) (*logs, error) {
	l := &logs{}
	l.outputs = &errorlog.Outputs{Stderr: stderr, OpenFile: l.openFile}
	if o.logFormat != "" {
		var err error
		if l.format, err = errorlog.ParseFormat(o.logFormat); err != nil {
			return nil, err
		}
	}
	target := o.logTarget()
	if target == "" {
		target = def
	}
	var start slog.Handler = slog.DiscardHandler
	if target != "" {
		out, err := l.outputs.Open(target)
		if err != nil {
			return nil, err
		}
		l.held = []*errorlog.Output{out}
		start = errorlog.NewHandler(out, &errorlog.HandlerOptions{Level: level, Format: l.format})
	}
	l.main.Store(&start)
	l.terminal.Store(target != "stderr")
	term := errorlog.NewHandler(stderr, &errorlog.HandlerOptions{Level: errorlog.LevelNotice, Tag: "mailproxy"})
	l.log = slog.New(slog.NewMultiHandler(switched{cur: &l.main}, untilStarted{term, &l.terminal}))
	return l, nil
}

// logTarget is -e's target, a file's path taken from the prefix (the
// configuration's folder by default) as the config package takes it.
func (o *options) logTarget() string {
	t := o.errorLog
	if t == "" || t == "stderr" || strings.HasPrefix(t, "syslog:") || filepath.IsAbs(t) || o.conf == "" {
		return t
	}
	prefix := o.prefix
	if prefix == "" {
		prefix = filepath.Dir(o.confPath())
	}
	return filepath.Join(prefix, t)
}

// openFile opens a log file: itself as long as the program has not
// switched user, through the privileged helper after, as nginx's master
// opens the files that its workers write.
func (l *logs) openFile(name string) (*os.File, error) {
	if h := l.helper.Load(); h != nil {
		return h.openLog(name)
	}
	return errorlog.OpenFile(name)
}

// openThrough has h open the log files from now on; nil for none.
func (l *logs) openThrough(h *helper) { l.helper.Store(h) }

// use makes cfg's main log the one in force.
func (l *logs) use(cfg *config.Config) {
	var held []*errorlog.Output
	for _, target := range cfg.ErrorLog {
		if out, err := l.outputs.Open(target); err == nil { // open already: a new reference
			held = append(held, out)
		}
	}
	h := cfg.Logger.Handler()
	l.main.Store(&h)
	if slices.Contains(cfg.ErrorLog, "stderr") {
		l.terminal.Store(false) // the log itself is on the terminal
	}
	l.mu.Lock()
	old := l.held
	l.held = held
	l.mu.Unlock()
	for _, out := range old {
		out.Close()
	}
}

// started ends the start-up: the terminal gets only what the logs send
// there.
func (l *logs) started() { l.terminal.Store(false) }

// reopen reopens every log file, after logrotate renamed them (SIGUSR1).
// As in nginx, "reopening logs" goes to the old files; "logs reopened"
// starts the new ones.
func (l *logs) reopen() {
	l.log.Log(context.Background(), errorlog.LevelNotice, "reopening logs")
	if err := l.outputs.Reopen(); err != nil {
		l.log.Log(context.Background(), errorlog.LevelAlert, "reopening logs failed", "err", err)
		return
	}
	l.log.Log(context.Background(), errorlog.LevelNotice, "logs reopened")
}

// close releases the references of the main log in force.
func (l *logs) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, out := range l.held {
		out.Close()
	}
	l.held = nil
}

// switched writes through the handler that cur holds when a record comes,
// with the attributes and groups given to it since.
type switched struct {
	cur *atomic.Pointer[slog.Handler]
	ops []func(slog.Handler) slog.Handler
}

func (s switched) handler() slog.Handler {
	h := *s.cur.Load()
	for _, op := range s.ops {
		h = op(h)
	}
	return h
}

func (s switched) Enabled(ctx context.Context, level slog.Level) bool {
	return (*s.cur.Load()).Enabled(ctx, level)
}

func (s switched) Handle(ctx context.Context, r slog.Record) error {
	return s.handler().Handle(ctx, r)
}

func (s switched) WithAttrs(attrs []slog.Attr) slog.Handler {
	return s.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
}

func (s switched) WithGroup(name string) slog.Handler {
	return s.with(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}

func (s switched) with(op func(slog.Handler) slog.Handler) slog.Handler {
	return switched{cur: s.cur, ops: append(slices.Clip(s.ops), op)}
}

// untilStarted passes records to its Handler while on holds.
type untilStarted struct {
	slog.Handler
	on *atomic.Bool
}

func (u untilStarted) Enabled(ctx context.Context, level slog.Level) bool {
	return u.on.Load() && u.Handler.Enabled(ctx, level)
}

func (u untilStarted) WithAttrs(attrs []slog.Attr) slog.Handler {
	return untilStarted{u.Handler.WithAttrs(attrs), u.on}
}

func (u untilStarted) WithGroup(name string) slog.Handler {
	return untilStarted{u.Handler.WithGroup(name), u.on}
}
