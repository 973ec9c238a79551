package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mailproxy/mailproxy/errorlog"
)

// logSpec is an error_log directive, checked: its target (a file's path
// made absolute) and its level.
type logSpec struct {
	d      *Directive // nil for the default log and -e
	target string
	level  slog.Level
}

// parseErrorLog checks "error_log target [level]". A missing level is
// error, as in nginx.
func parseErrorLog(d *Directive, opts Options) (logSpec, error) {
	spec := logSpec{d: d, target: logTarget(d.Args[0], opts), level: errorlog.LevelError}
	if params, ok := strings.CutPrefix(spec.target, "syslog:"); ok {
		if _, err := errorlog.ParseSyslog(params); err != nil {
			return spec, err
		}
	}
	if strings.HasPrefix(spec.target, "memory:") {
		return spec, errors.New(`"memory:" logs (nginx's debugging buffer) are not supported`)
	}
	if len(d.Args) == 2 {
		var err error
		if spec.level, err = errorlog.ParseLevel(d.Args[1]); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// logTarget makes a file's path absolute; other targets stay as they are.
func logTarget(target string, opts Options) string {
	if target == "stderr" || strings.HasPrefix(target, "syslog:") || strings.HasPrefix(target, "memory:") {
		return target
	}
	return opts.path(target)
}

// setErrorLog reads error_log in the mail block or a server block. The
// first in a block replaces the inherited ones; the others add to it.
func setErrorLog(s *settings, d *Directive) error {
	spec, err := parseErrorLog(d, s.logs.opts)
	if err != nil {
		return err
	}
	if !s.seen[d.Name] {
		s.errorLogs = nil
	}
	s.errorLogs = append(s.errorLogs, spec)
	return nil
}

// openLogs opens the error logs of the block just read, when it has
// error_log; otherwise its servers log where the enclosing block does.
func (s *settings) openLogs() error {
	if !s.seen["error_log"] {
		return nil
	}
	log, err := s.logs.logger(s.errorLogs)
	if err == nil {
		s.log = log
	}
	return err
}

// logLoad opens the error logs of one Load.
type logLoad struct {
	opts    Options
	outputs *errorlog.Outputs
	format  errorlog.Format
	opened  []*errorlog.Output // for the Config's Resources
}

// mainLogs returns the logs of the main context: -e in place of its
// error_log directives, at the most verbose of their levels; standard
// error at level error when there are none.
func (l *logLoad) mainLogs(directives []logSpec) []logSpec {
	switch {
	case l.opts.ErrorLog != "":
		level := errorlog.LevelError
		for _, s := range directives {
			level = min(level, s.level)
		}
		return []logSpec{{target: logTarget(l.opts.ErrorLog, l.opts), level: level}}
	case len(directives) == 0:
		return []logSpec{{target: "stderr", level: errorlog.LevelError}}
	}
	return directives
}

// logger opens the targets of specs and returns a logger that writes
// to each at its level.
func (l *logLoad) logger(specs []logSpec) (*slog.Logger, error) {
	hs := make([]slog.Handler, 0, len(specs))
	for _, s := range specs {
		out, err := l.outputs.Open(s.target)
		if err != nil {
			err = fmt.Errorf("error_log %s: %w", s.target, err)
			if s.d != nil {
				err = errorAt(s.d, err.Error())
			}
			return nil, err
		}
		l.opened = append(l.opened, out)
		hs = append(hs, errorlog.NewHandler(out, &errorlog.HandlerOptions{Level: s.level, Format: l.format}))
	}
	if len(hs) == 1 {
		return slog.New(hs[0]), nil
	}
	return slog.New(slog.NewMultiHandler(hs...)), nil
}

// close closes what the Load opened, when it fails.
func (l *logLoad) close() {
	for _, o := range l.opened {
		o.Close()
	}
}
