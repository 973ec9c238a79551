package errorlog

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Syslog is a syslog target: the parameters of "syslog:server=…" in
// error_log. Messages go as nginx sends them: RFC 3164 datagrams,
// "<PRI>Mmm dd hh:mm:ss hostname tag: " followed by the log line.
type Syslog struct {
	// Network and Address are where the messages go: "udp" and host:port
	// (server=host[:port], port 514 by default), or "unixgram" and the
	// path of a socket (server=unix:/dev/log).
	Network, Address string
	// Facility is the syslog facility's number (facility=; local7, 23,
	// by default, as in nginx).
	Facility int
	// Severity is the severity of every message (severity=), or -1 (the
	// default) for the severity of each record's level: debug 7, info 6,
	// notice 5, warn 4, error 3, crit 2, alert 1, emerg 0. nginx accepts
	// severity= in error_log and takes the record's severity regardless.
	Severity int
	// Tag is the tag (tag=): up to 32 letters, digits and underscores.
	// The default is "mailproxy", where nginx's is "nginx".
	Tag string
	// NoHostname leaves the host name out of the header (nohostname).
	NoHostname bool
}

// DefaultTag is the syslog tag when tag= is absent.
const DefaultTag = "mailproxy"

// The syslog facilities and severities by name, in the order of their
// numbers (RFC 3164), as nginx names them.
var (
	facilities = []string{
		"kern", "user", "mail", "daemon", "auth", "intern", "lpr", "news", "uucp",
		"clock", "authpriv", "ftp", "ntp", "audit", "alert", "cron",
		"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
	}
	severities = []string{"emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"}
)

// syslogParams are the parameters that take a value.
var syslogParams = []string{"server", "facility", "severity", "tag"}

// maxTag bounds the length of a tag, as in nginx.
const maxTag = 32

// ParseSyslog reads the parameters that follow "syslog:" in error_log,
// as nginx reads them: comma-separated server=, facility=, severity=,
// tag= and nohostname, server= required and each at most once.
func ParseSyslog(params string) (*Syslog, error) {
	s := &Syslog{Facility: 23, Severity: -1, Tag: DefaultTag}
	seen := map[string]bool{}
	for _, p := range strings.Split(params, ",") {
		name, value, hasValue := strings.Cut(p, "=")
		if !(hasValue && slices.Contains(syslogParams, name) || p == "nohostname") {
			return nil, fmt.Errorf("unknown syslog parameter %q", p)
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate syslog %q", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "server":
			s.Network, s.Address, err = syslogServer(value)
		case "facility":
			if s.Facility = slices.Index(facilities, value); s.Facility < 0 {
				err = fmt.Errorf("unknown syslog facility %q", value)
			}
		case "severity":
			if s.Severity = slices.Index(severities, value); s.Severity < 0 {
				err = fmt.Errorf("unknown syslog severity %q", value)
			}
		case "tag":
			s.Tag, err = value, checkTag(value)
		case "nohostname":
			s.NoHostname = true
		}
		if err != nil {
			return nil, err
		}
	}
	if s.Address == "" {
		return nil, errors.New("no syslog server specified")
	}
	return s, nil
}

// syslogServer reads server=: host[:port], [ipv6][:port] or unix:path.
func syslogServer(v string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(v, "unix:"); ok {
		if path == "" {
			return "", "", fmt.Errorf("invalid syslog server %q", v)
		}
		return "unixgram", path, nil
	}
	host, port := v, "514"
	switch {
	case strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]"):
		host = v[1 : len(v)-1]
	case strings.HasPrefix(v, "[") || strings.Count(v, ":") == 1:
		if host, port, err = net.SplitHostPort(v); err != nil {
			return "", "", fmt.Errorf("invalid syslog server %q", v)
		}
	case strings.Contains(v, ":"):
		if _, err := netip.ParseAddr(v); err != nil { // a bare IPv6 address
			return "", "", fmt.Errorf("invalid syslog server %q", v)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return "", "", fmt.Errorf("invalid port in syslog server %q", v)
	}
	if host == "" || strings.ContainsAny(host, " /[]") {
		return "", "", fmt.Errorf("invalid syslog server %q", v)
	}
	return "udp", net.JoinHostPort(host, port), nil
}

func checkTag(tag string) error {
	if len(tag) > maxTag {
		return fmt.Errorf("syslog tag length exceeds %d", maxTag)
	}
	for _, c := range []byte(tag) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return errors.New(`syslog "tag" only allows alphanumeric characters and underscore`)
		}
	}
	return nil
}

// syslogConn sends the messages of one syslog target.
type syslogConn struct {
	cfg      Syslog
	hostname string

	mu     sync.Mutex
	conn   net.Conn // nil after a failed send: dialled again on the next
	closed bool
}

// dialSyslog connects to the server: for UDP, this resolves its name and
// sends nothing.
func dialSyslog(cfg *Syslog) (*syslogConn, error) {
	conn, err := net.Dial(cfg.Network, cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("syslog server: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return &syslogConn{cfg: *cfg, hostname: host, conn: conn}, nil
}

// maxSyslogLine bounds the log line in a message, as nginx bounds its
// error lines (NGX_MAX_ERROR_STR).
const maxSyslogLine = 2048

// syslogTime is the time in an RFC 3164 header.
const syslogTime = "Jan _2 15:04:05"

// send sends one line, without its newline, as a message of its level.
// A failed send closes the socket, which the next send opens again (a
// restarted syslog daemon has a new socket).
func (s *syslogConn) send(t time.Time, level slog.Level, line []byte) error {
	if t.IsZero() {
		t = time.Now()
	}
	sev := s.cfg.Severity
	if sev < 0 {
		sev = severity(level)
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = line[:min(len(line), maxSyslogLine)]
	msg := make([]byte, 0, 64+len(s.hostname)+len(line))
	msg = append(msg, '<')
	msg = strconv.AppendInt(msg, int64(s.cfg.Facility*8+sev), 10)
	msg = append(msg, '>')
	msg = t.Local().AppendFormat(msg, syslogTime)
	msg = append(msg, ' ')
	if !s.cfg.NoHostname {
		msg = append(msg, s.hostname...)
		msg = append(msg, ' ')
	}
	msg = append(msg, s.cfg.Tag...)
	msg = append(msg, ": "...)
	msg = append(msg, line...)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	if s.conn == nil {
		conn, err := net.Dial(s.cfg.Network, s.cfg.Address)
		if err != nil {
			return err
		}
		s.conn = conn
	}
	if _, err := s.conn.Write(msg); err != nil {
		s.conn.Close()
		s.conn = nil
		return err
	}
	return nil
}

func (s *syslogConn) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	return s.conn.Close()
}
