// Package errorlog is nginx's error_log for log/slog: nginx's levels, its
// line format, and its targets (standard error, files that are reopened
// after a rotation, syslog over UDP).
//
// A [Handler] writes each record as one line in nginx's format,
//
//	2026/11/30 04:11:28 [info] 1234#0: *17 client closed connection while in auth state, client: 192.0.2.7, server: 127.0.0.1:143
//
// that is: the local time, the level in brackets, the process id and
// "#0" (nginx's thread number), "*N " when the record carries a
// connection number ([ConnKey]), the message, " while …" when it carries
// an action ([ActionKey]), and then ", key: value" for each attribute,
// keys of groups joined with dots. Strings are written in double quotes,
// as nginx quotes the login a client gave ("login: \"alice\""), with Go's
// escapes for quotes, backslashes and control characters; other values
// (numbers, durations, addresses, errors) are written as they are, unless
// their text is empty or holds a comma, a double quote, a backslash or a
// control character, in which case they are quoted too. A line is thus
// never split, and reads back unambiguously.
//
// With [JSON], the same records are JSON lines (slog's JSONHandler), with
// nginx's level names and the connection number as the "conn" attribute.
//
// In both formats a key appears at most once in a line: an attribute
// replaces an earlier one with the same key (in the same group), taking
// its place in the line.
//
// [Outputs] opens the targets of error_log: "stderr", a file, or
// "syslog:server=…" ([ParseSyslog]), and reopens the files; its OpenFile
// hook lets a program that gave up its privileges have them opened by a
// process that kept them. Several logs at once, each with its own level,
// are a slog.NewMultiHandler of Handlers, as nginx writes every error_log
// of a context.
package errorlog

import (
	"fmt"
	"log/slog"
)

// nginx's levels, from the most verbose to the most severe. debug, info,
// warn and error are slog's own; notice stands between info and warn,
// crit, alert and emerg above error.
const (
	LevelDebug  = slog.LevelDebug
	LevelInfo   = slog.LevelInfo
	LevelNotice = slog.Level(2)
	LevelWarn   = slog.LevelWarn
	LevelError  = slog.LevelError
	LevelCrit   = slog.Level(12)
	LevelAlert  = slog.Level(16)
	LevelEmerg  = slog.Level(20)
)

// levels lists nginx's levels from the most severe down, with their names
// and their syslog severities (RFC 3164).
var levels = []struct {
	level    slog.Level
	name     string
	severity int
}{
	{LevelEmerg, "emerg", 0},
	{LevelAlert, "alert", 1},
	{LevelCrit, "crit", 2},
	{LevelError, "error", 3},
	{LevelWarn, "warn", 4},
	{LevelNotice, "notice", 5},
	{LevelInfo, "info", 6},
	{LevelDebug, "debug", 7},
}

// ParseLevel returns the level named as in error_log: debug, info,
// notice, warn, error, crit, alert or emerg.
func ParseLevel(name string) (slog.Level, error) {
	for _, l := range levels {
		if l.name == name {
			return l.level, nil
		}
	}
	return 0, fmt.Errorf("invalid log level %q", name)
}

// LevelName returns nginx's name of level l. A level between two of
// nginx's takes the name of the one below it (slog.LevelWarn+1 is "warn");
// one below debug is "debug".
func LevelName(l slog.Level) string {
	return levels[levelIndex(l)].name
}

// severity returns the syslog severity of level l.
func severity(l slog.Level) int {
	return levels[levelIndex(l)].severity
}

func levelIndex(l slog.Level) int {
	for i, nl := range levels {
		if l >= nl.level {
			return i
		}
	}
	return len(levels) - 1
}

// Keys that a Handler writes in nginx's places rather than as attributes.
const (
	// ConnKey is the key of a session's connection number: an integer
	// attribute with this key, outside any group, is written "*N " before
	// the message, as nginx writes its connection numbers.
	ConnKey = "conn"
	// ActionKey is the key of what the session was doing: a string
	// attribute with this key, outside any group, is written after the
	// message as " while <action>" ("client timed out while in auth
	// state").
	ActionKey = "action"
)

// Format is how a Handler writes its records.
type Format uint8

// The formats.
const (
	Nginx Format = iota // nginx's error log lines (the zero value)
	JSON                // JSON lines
)

// ParseFormat returns the format named "nginx" or "json".
func ParseFormat(name string) (Format, error) {
	switch name {
	case "nginx":
		return Nginx, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("unknown log format %q (nginx or json)", name)
}

// String returns the format's name.
func (f Format) String() string {
	if f == JSON {
		return "json"
	}
	return "nginx"
}
