package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/mailproxy/mailproxy/config"
)

// levels maps nginx's error_log levels onto slog's.
var levels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "notice": slog.LevelInfo,
	"warn": slog.LevelWarn, "error": slog.LevelError, "crit": slog.LevelError,
	"alert": slog.LevelError, "emerg": slog.LevelError,
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// openLog opens the error log: -e, else the configuration's error_log,
// else standard error. The returned func closes it.
func (o *options) openLog(cfg *config.Config, stderr io.Writer) (*slog.Logger, func(), error) {
	target, level := "stderr", "error"
	if len(cfg.ErrorLog) > 0 {
		target = cfg.ErrorLog[0]
	}
	if len(cfg.ErrorLog) > 1 {
		level = cfg.ErrorLog[1]
	}
	if o.errorLog != "" {
		target = o.errorLog
	}
	lv, ok := levels[level]
	if !ok {
		return nil, nil, fmt.Errorf("error_log: unknown level %q", level)
	}
	if target == "stderr" {
		return newLogger(stderr, lv), func() {}, nil
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("error_log: %w", err)
	}
	return newLogger(f, lv), func() { f.Close() }, nil
}
