package errorlog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/internal/testutil"
)

var when = time.Date(2026, 11, 30, 4, 11, 28, 0, time.Local)

// record is a record of a test, logged through a Handler's WithAttrs and
// WithGroup.
type record struct {
	name  string
	with  func(h slog.Handler) slog.Handler // nil: the Handler as it is
	level slog.Level
	msg   string
	attrs []slog.Attr
	line  string         // the nginx line after "[level] pid#0: "
	json  map[string]any // the JSON attributes beyond time, level and msg
}

var session = func(h slog.Handler) slog.Handler {
	return h.WithAttrs([]slog.Attr{
		slog.Uint64(errorlog.ConnKey, 17),
		slog.Any("client", netip.MustParseAddr("192.0.2.7")),
		slog.Any("server", netip.MustParseAddrPort("0.0.0.0:143")),
	})
}

var records = []record{
	{
		name: "nginx's example", with: session, level: slog.LevelInfo, msg: "client login failed",
		attrs: []slog.Attr{slog.String("login", "alice")},
		line:  `*17 client login failed, client: 192.0.2.7, server: 0.0.0.0:143, login: "alice"`,
		json:  map[string]any{"conn": 17.0, "client": "192.0.2.7", "server": "0.0.0.0:143", "login": "alice"},
	},
	{
		name: "action", with: session, level: slog.LevelInfo, msg: "client closed connection",
		attrs: []slog.Attr{slog.String(errorlog.ActionKey, "in auth state")},
		line:  `*17 client closed connection while in auth state, client: 192.0.2.7, server: 0.0.0.0:143`,
		json:  map[string]any{"conn": 17.0, "client": "192.0.2.7", "server": "0.0.0.0:143", "action": "in auth state"},
	},
	{
		name: "nginx levels", level: errorlog.LevelNotice, msg: "reopening logs",
		line: `reopening logs`, json: map[string]any{},
	},
	{
		name: "values", level: errorlog.LevelCrit, msg: "values",
		attrs: []slog.Attr{
			slog.Int("n", -3), slog.Uint64("u", 7), slog.Float64("f", 1.5), slog.Bool("b", true),
			slog.Duration("d", 1500*time.Millisecond), slog.Any("err", errors.New("dial tcp 127.0.0.1:1: connection refused")),
		},
		line: `values, n: -3, u: 7, f: 1.5, b: true, d: 1.5s, err: dial tcp 127.0.0.1:1: connection refused`,
		json: map[string]any{"n": -3.0, "u": 7.0, "f": 1.5, "b": true, "d": 1.5e9, "err": "dial tcp 127.0.0.1:1: connection refused"},
	},
	{
		name: "quoting", level: errorlog.LevelEmerg, msg: "two\nlines",
		attrs: []slog.Attr{
			slog.String("user", "a, b: \"c\"\r\n"), slog.Any("err", errors.New("x, y")), slog.String("empty", ""), slog.Any("none", ""),
		},
		line: `two\nlines, user: "a, b: \"c\"\r\n", err: "x, y", empty: "", none: ""`,
		json: map[string]any{"user": "a, b: \"c\"\r\n", "err": "x, y", "empty": "", "none": ""},
	},
	{
		name: "a key once", level: slog.LevelWarn, msg: "m",
		with: func(h slog.Handler) slog.Handler {
			return h.WithAttrs([]slog.Attr{slog.String("proto", "imap"), slog.Int("a", 1)}).WithAttrs([]slog.Attr{slog.String("proto", "pop3")})
		},
		attrs: []slog.Attr{slog.String("proto", "smtp"), slog.Int("b", 2), slog.Int("b", 3)},
		line:  `m, proto: "smtp", a: 1, b: 3`,
		json:  map[string]any{"proto": "smtp", "a": 1.0, "b": 3.0},
	},
	{
		name: "groups", level: slog.LevelError, msg: "m",
		with: func(h slog.Handler) slog.Handler {
			return h.WithAttrs([]slog.Attr{slog.Int("a", 1)}).WithGroup("tls").WithAttrs([]slog.Attr{slog.String("v", "TLSv1.3")}).WithGroup("empty")
		},
		attrs: []slog.Attr{},
		line:  `m, a: 1, tls.v: "TLSv1.3"`,
		json:  map[string]any{"a": 1.0, "tls": map[string]any{"v": "TLSv1.3"}},
	},
	{
		name: "group values", level: slog.LevelError, msg: "m",
		attrs: []slog.Attr{slog.Group("g", slog.Int("x", 1), slog.Int("x", 2), slog.Group("h", slog.String("y", "z"))), slog.Group("", slog.Int("inline", 3)), slog.Group("none")},
		line:  `m, g.x: 2, g.h.y: "z", inline: 3`,
		json:  map[string]any{"g": map[string]any{"x": 2.0, "h": map[string]any{"y": "z"}}, "inline": 3.0},
	},
	{
		name: "conn inside a group is an attribute", level: slog.LevelError, msg: "m",
		with:  func(h slog.Handler) slog.Handler { return h.WithGroup("g") },
		attrs: []slog.Attr{slog.Int(errorlog.ConnKey, 5)},
		line:  `m, g.conn: 5`,
		json:  map[string]any{"g": map[string]any{"conn": 5.0}},
	},
}

func handle(t *testing.T, h slog.Handler, rec record) {
	t.Helper()
	if rec.with != nil {
		h = rec.with(h)
	}
	r := slog.NewRecord(when, rec.level, rec.msg, 0)
	r.AddAttrs(rec.attrs...)
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// Each record gives the nginx line expected, which reads back into the
// record's parts.
func TestNginxLines(t *testing.T) {
	for _, rec := range records {
		t.Run(rec.name, func(t *testing.T) {
			var out bytes.Buffer
			handle(t, errorlog.NewHandler(&out, &errorlog.HandlerOptions{Level: errorlog.LevelDebug}), rec)
			level := errorlog.LevelName(rec.level)
			want := fmt.Sprintf("2026/11/30 04:11:28 [%s] %d#0: %s\n", level, os.Getpid(), rec.line)
			if out.String() != want {
				t.Fatalf("line\n%q\nwant\n%q", out.String(), want)
			}
			l, err := testutil.ParseLogLine(strings.TrimSuffix(out.String(), "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !l.Time.Equal(when) || l.Level != level || l.PID != os.Getpid() {
				t.Errorf("read back %+v", l)
			}
			for _, a := range rec.attrs {
				if a.Key == "user" || a.Key == "login" {
					if got := l.Attrs[a.Key]; got != a.Value.String() {
						t.Errorf("%s read back as %q, want %q", a.Key, got, a.Value.String())
					}
				}
			}
		})
	}
}

// The same records as JSON lines: nginx's level names, the connection
// number and the action as attributes.
func TestJSONLines(t *testing.T) {
	for _, rec := range records {
		t.Run(rec.name, func(t *testing.T) {
			var out bytes.Buffer
			handle(t, errorlog.NewHandler(&out, &errorlog.HandlerOptions{Level: errorlog.LevelDebug, Format: errorlog.JSON}), rec)
			if strings.Count(out.String(), "\n") != 1 {
				t.Fatalf("not one line: %q", out.String())
			}
			var got map[string]any
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			ts, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(got["time"]))
			if !ts.Equal(when) || got["level"] != errorlog.LevelName(rec.level) || got["msg"] != rec.msg {
				t.Errorf("time, level, msg in %s", out.String())
			}
			delete(got, "time")
			delete(got, "level")
			delete(got, "msg")
			if fmt.Sprint(got) != fmt.Sprint(rec.json) {
				t.Errorf("attributes\n%v\nwant\n%v", got, rec.json)
			}
		})
	}
}

// slog's own conformance tests, in both formats, the nginx lines read
// back with their dotted keys as groups.
func TestSlogConformance(t *testing.T) {
	for _, format := range []errorlog.Format{errorlog.Nginx, errorlog.JSON} {
		t.Run(format.String(), func(t *testing.T) {
			var out bytes.Buffer
			h := errorlog.NewHandler(&out, &errorlog.HandlerOptions{Level: errorlog.LevelDebug, Format: format})
			results := func() []map[string]any {
				var ms []map[string]any
				for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
					m, err := readBack(format, line)
					if err != nil {
						t.Fatal(err)
					}
					ms = append(ms, m)
				}
				return ms
			}
			if err := slogtest.TestHandler(h, results); err != nil {
				t.Error(err)
			}
		})
	}
}

func readBack(format errorlog.Format, line string) (map[string]any, error) {
	m := map[string]any{}
	if format == errorlog.JSON {
		return m, json.Unmarshal([]byte(line), &m)
	}
	l, err := testutil.ParseLogLine(line)
	if err != nil {
		return nil, err
	}
	if !l.Time.IsZero() {
		m[slog.TimeKey] = l.Time
	}
	m[slog.LevelKey], m[slog.MessageKey] = l.Level, l.Msg
	for _, k := range l.Keys {
		group, path := m, strings.Split(k, ".")
		for _, g := range path[:len(path)-1] {
			if group[g] == nil {
				group[g] = map[string]any{}
			}
			group = group[g].(map[string]any)
		}
		group[path[len(path)-1]] = l.Attrs[k]
	}
	return m, nil
}

func TestLevels(t *testing.T) {
	names := []string{"debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"}
	var prev slog.Level
	for i, name := range names {
		l, err := errorlog.ParseLevel(name)
		if err != nil || errorlog.LevelName(l) != name || i > 0 && l <= prev {
			t.Errorf("%s: level %v, %v, name %q", name, l, err, errorlog.LevelName(l))
		}
		prev = l
	}
	if errorlog.LevelInfo != slog.LevelInfo || errorlog.LevelWarn != slog.LevelWarn || errorlog.LevelError != slog.LevelError || errorlog.LevelDebug != slog.LevelDebug {
		t.Error("slog's levels are not nginx's debug, info, warn, error")
	}
	for _, bad := range []string{"", "INFO", "warning", "debug_mail"} {
		if _, err := errorlog.ParseLevel(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for l, want := range map[slog.Level]string{slog.LevelWarn + 1: "warn", -8: "debug", 100: "emerg", errorlog.LevelNotice - 1: "info"} {
		if got := errorlog.LevelName(l); got != want {
			t.Errorf("LevelName(%d) = %q, want %q", l, got, want)
		}
	}
}

// A Handler writes its level and above; the default is error, as an
// error_log without a level.
func TestHandlerLevel(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(errorlog.NewHandler(&out, nil))
	log.Warn("dropped")
	log.Error("kept")
	log.Log(context.Background(), errorlog.LevelAlert, "kept too")
	notice := slog.New(errorlog.NewHandler(&out, &errorlog.HandlerOptions{Level: errorlog.LevelNotice}))
	notice.Info("dropped")
	notice.Log(context.Background(), errorlog.LevelNotice, "noticed")
	got := out.String()
	if strings.Contains(got, "dropped") || !strings.Contains(got, "[error] ") || !strings.Contains(got, "[alert] ") || !strings.Contains(got, "[notice] ") {
		t.Errorf("lines:\n%s", got)
	}
}

// With a tag, lines read as nginx's on the terminal while it starts.
func TestTag(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(errorlog.NewHandler(&out, &errorlog.HandlerOptions{Tag: "mailproxy"}))
	log.Log(context.Background(), errorlog.LevelEmerg, "cannot start", "err", errors.New("bind: address already in use"))
	if want := "mailproxy: [emerg] cannot start, err: bind: address already in use\n"; out.String() != want {
		t.Errorf("%q, want %q", out.String(), want)
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range []errorlog.Format{errorlog.Nginx, errorlog.JSON} {
		if got, err := errorlog.ParseFormat(f.String()); err != nil || got != f {
			t.Errorf("%v: %v, %v", f, got, err)
		}
	}
	if _, err := errorlog.ParseFormat("text"); err == nil {
		t.Error("text accepted")
	}
}
