package errorlog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/internal/testutil"
)

func TestParseSyslog(t *testing.T) {
	def := func(network, addr string) errorlog.Syslog {
		return errorlog.Syslog{Network: network, Address: addr, Facility: 23, Severity: -1, Tag: "mailproxy"}
	}
	with := func(s errorlog.Syslog, f func(*errorlog.Syslog)) errorlog.Syslog { f(&s); return s }
	tests := []struct {
		params string
		want   errorlog.Syslog
		err    string
	}{
		{"server=192.0.2.1", def("udp", "192.0.2.1:514"), ""},
		{"server=192.0.2.1:1514", def("udp", "192.0.2.1:1514"), ""},
		{"server=[2001:db8::1]:1514", def("udp", "[2001:db8::1]:1514"), ""},
		{"server=[2001:db8::1]", def("udp", "[2001:db8::1]:514"), ""},
		{"server=2001:db8::1", def("udp", "[2001:db8::1]:514"), ""},
		{"server=log.example.org", def("udp", "log.example.org:514"), ""},
		{"server=unix:/dev/log", def("unixgram", "/dev/log"), ""},
		{"server=localhost,facility=mail,severity=warn,tag=mail_proxy2,nohostname", with(def("udp", "localhost:514"), func(s *errorlog.Syslog) {
			s.Facility, s.Severity, s.Tag, s.NoHostname = 2, 4, "mail_proxy2", true
		}), ""},
		{"tag=nginx,server=127.0.0.1,facility=kern,severity=emerg", with(def("udp", "127.0.0.1:514"), func(s *errorlog.Syslog) {
			s.Facility, s.Severity, s.Tag = 0, 0, "nginx"
		}), ""},
		{"", errorlog.Syslog{}, `unknown syslog parameter ""`},
		{"facility=mail", errorlog.Syslog{}, "no syslog server specified"},
		{"server=127.0.0.1,server=127.0.0.2", errorlog.Syslog{}, `duplicate syslog "server"`},
		{"server=127.0.0.1,,tag=x", errorlog.Syslog{}, `unknown syslog parameter ""`},
		{"server=127.0.0.1,port=1", errorlog.Syslog{}, `unknown syslog parameter "port=1"`},
		{"server=127.0.0.1,nohostname=on", errorlog.Syslog{}, `unknown syslog parameter "nohostname=on"`},
		{"server=127.0.0.1,facility=local8", errorlog.Syslog{}, `unknown syslog facility "local8"`},
		{"server=127.0.0.1,severity=warning", errorlog.Syslog{}, `unknown syslog severity "warning"`},
		{"server=127.0.0.1,tag=" + strings.Repeat("t", 33), errorlog.Syslog{}, "syslog tag length exceeds 32"},
		{"server=127.0.0.1,tag=mail-proxy", errorlog.Syslog{}, `syslog "tag" only allows alphanumeric characters and underscore`},
		{"server=127.0.0.1:0", errorlog.Syslog{}, "invalid port"},
		{"server=127.0.0.1:65536", errorlog.Syslog{}, "invalid port"},
		{"server=127.0.0.1:x", errorlog.Syslog{}, "invalid port"},
		{"server=:514", errorlog.Syslog{}, "invalid syslog server"},
		{"server=unix:", errorlog.Syslog{}, "invalid syslog server"},
		{"server=a:b:c", errorlog.Syslog{}, "invalid syslog server"},
	}
	for _, tt := range tests {
		t.Run(tt.params, func(t *testing.T) {
			got, err := errorlog.ParseSyslog(tt.params)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, tt.want)
			}
		})
	}
}

// listenSyslog is a syslog server on a UDP socket of 127.0.0.1.
func listenSyslog(t *testing.T) (net.PacketConn, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc, pc.LocalAddr().String()
}

func receive(t *testing.T, pc net.PacketConn) string {
	t.Helper()
	buf := make([]byte, 8192)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// header matches an RFC 3164 header: PRI, time, host name (optional) and
// tag.
var header = regexp.MustCompile(`^<(\d+)>([A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d) (?:(\S+) )?(\w+): (.*)$`)

// Records reach a real syslog socket as nginx sends them: the PRI of the
// facility and the record's severity, the time, the host name, the tag,
// and the error log line without its newline.
func TestSyslogOverUDP(t *testing.T) {
	pc, addr := listenSyslog(t)
	host, _ := os.Hostname()
	tests := []struct {
		params string
		level  slog.Level
		pri    string
		host   string
		tag    string
		format errorlog.Format
	}{
		{"", slog.LevelInfo, "190", host, "mailproxy", errorlog.Nginx}, // local7 (23) * 8 + info (6)
		{",facility=mail", errorlog.LevelCrit, "18", host, "mailproxy", errorlog.Nginx},
		{",facility=auth,tag=nginx,nohostname", slog.LevelDebug, "39", "", "nginx", errorlog.Nginx},
		{",severity=notice", errorlog.LevelEmerg, "189", host, "mailproxy", errorlog.Nginx},
		{",facility=daemon", slog.LevelWarn, "28", host, "mailproxy", errorlog.JSON},
	}
	for _, tt := range tests {
		t.Run(tt.params, func(t *testing.T) {
			var outs errorlog.Outputs
			out, err := outs.Open("syslog:server=" + addr + tt.params)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			log := slog.New(errorlog.NewHandler(out, &errorlog.HandlerOptions{Level: errorlog.LevelDebug, Format: tt.format}))
			log.Log(context.Background(), tt.level, "client timed out", errorlog.ConnKey, 3, errorlog.ActionKey, "in auth state", "user", "alice")
			m := header.FindStringSubmatch(receive(t, pc))
			if m == nil {
				t.Fatal("not an RFC 3164 message")
			}
			if m[1] != tt.pri || m[3] != tt.host || m[4] != tt.tag {
				t.Errorf("PRI %s, host %q, tag %q; want %s, %q, %q", m[1], m[3], m[4], tt.pri, tt.host, tt.tag)
			}
			if ts, err := time.ParseInLocation("Jan _2 15:04:05", m[2], time.Local); err != nil || time.Since(ts.AddDate(time.Now().Year(), 0, 0)).Abs() > time.Minute {
				t.Errorf("time %q: %v", m[2], err)
			}
			if tt.format == errorlog.JSON {
				var rec map[string]any
				if err := json.Unmarshal([]byte(m[5]), &rec); err != nil || rec["level"] != errorlog.LevelName(tt.level) || rec["conn"] != 3.0 {
					t.Errorf("JSON message %q: %v", m[5], err)
				}
				return
			}
			l, err := testutil.ParseLogLine(m[5])
			if err != nil {
				t.Fatal(err)
			}
			if l.Level != errorlog.LevelName(tt.level) || l.Conn != "3" || l.Msg != "client timed out" || l.Action != "in auth state" || l.Attrs["user"] != "alice" {
				t.Errorf("line read back as %+v", l)
			}
		})
	}
}

// A long line is cut at nginx's bound for error lines.
func TestSyslogLongLine(t *testing.T) {
	pc, addr := listenSyslog(t)
	var outs errorlog.Outputs
	out, err := outs.Open("syslog:server=" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	slog.New(errorlog.NewHandler(out, nil)).Error(strings.Repeat("x", 5000))
	m := header.FindStringSubmatch(receive(t, pc))
	if m == nil || len(m[5]) != 2048 {
		t.Fatalf("message of %d bytes", len(m[5]))
	}
}

// On a unix socket (server=unix:/dev/log), a restarted syslog daemon's
// new socket gets the messages: a failed send opens the socket again.
func TestSyslogUnixReconnects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	listen := func() *net.UnixConn {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	daemon := listen()
	var outs errorlog.Outputs
	out, err := outs.Open("syslog:server=unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	log := slog.New(errorlog.NewHandler(out, nil))
	log.Error("first")
	if got := receive(t, daemon); !strings.HasSuffix(got, "first") {
		t.Fatalf("got %q", got)
	}
	daemon.Close()
	os.Remove(path)
	daemon = listen()
	defer daemon.Close()
	// The first send after the restart goes to the old socket and fails;
	// a later one reaches the new daemon.
	for i := range 3 {
		log.Error(fmt.Sprint("after the restart ", i))
	}
	if got := receive(t, daemon); !strings.Contains(got, "after the restart") {
		t.Fatalf("got %q", got)
	}
}
