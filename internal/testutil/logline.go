package testutil

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// LogLine is a line of nginx's error log format (package errorlog), read
// back.
type LogLine struct {
	Time   time.Time // zero when the line has none
	Level  string
	PID    int
	Conn   string // the connection number after "*", or ""
	Msg    string
	Action string // what follows " while ", or ""
	// Keys lists the attribute keys in their order, and Attrs their
	// values, quoted ones unquoted.
	Keys  []string
	Attrs map[string]string
}

var (
	logHead = regexp.MustCompile(`^(?:(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) )?\[([a-z]+)\] (\d+)#0: (?:\*(\d+) )?`)
	logKey  = regexp.MustCompile(`, ([A-Za-z0-9_.]+): `)
)

// ParseLogLine reads one line of nginx's error log format, without its
// newline. The message ends where the first ", key: " starts.
func ParseLogLine(line string) (*LogLine, error) {
	m := logHead.FindStringSubmatch(line)
	if m == nil {
		return nil, fmt.Errorf("not an error log line: %q", line)
	}
	l := &LogLine{Level: m[2], Conn: m[4], Attrs: map[string]string{}}
	if m[1] != "" {
		t, err := time.ParseInLocation("2006/01/02 15:04:05", m[1], time.Local)
		if err != nil {
			return nil, err
		}
		l.Time = t
	}
	l.PID, _ = strconv.Atoi(m[3])
	rest := line[len(m[0]):]
	end := len(rest)
	if loc := logKey.FindStringIndex(rest); loc != nil {
		end = loc[0]
	}
	l.Msg, l.Action, _ = strings.Cut(rest[:end], " while ")
	rest = rest[end:]
	for rest != "" {
		km := logKey.FindStringSubmatch(rest)
		if km == nil || !strings.HasPrefix(rest, km[0]) {
			return nil, fmt.Errorf("no attribute at %q in %q", rest, line)
		}
		key := km[1]
		rest = rest[len(km[0]):]
		var value string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, fmt.Errorf("bad quoted value at %q in %q", rest, line)
			}
			value, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			value, rest, _ = strings.Cut(rest, ", ")
			if rest != "" {
				rest = ", " + rest
			}
		}
		if _, dup := l.Attrs[key]; dup {
			return nil, fmt.Errorf("key %q twice in %q", key, line)
		}
		l.Keys = append(l.Keys, key)
		l.Attrs[key] = value
	}
	return l, nil
}
