//go:build unix

package testutil

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// HAProxy is a private HAProxy for integration tests: a load balancer in
// TCP mode in front of the proxy, as in examples/haproxy. Every frontend
// listens on 127.0.0.1 and has one server behind it; everything
// (configuration, stats socket, log) is in Dir. It runs in the
// foreground as a child of the test, killed when the test ends.
type HAProxy struct {
	Addrs []string // the frontends' 127.0.0.1:port, in the order they were given
	Dir   string   // the instance folder; the traffic log is Dir/haproxy.log

	*daemon
}

// HAProxyFrontend is a frontend of a test HAProxy and the one server
// behind it.
type HAProxyFrontend struct {
	Server string // the server's host:port
	// Options follow the server's address on its server line:
	// "send-proxy", "send-proxy-v2", "send-proxy-v2 check inter 100ms".
	Options string
	// Backend holds more lines for the backend section, such as
	// "option tcp-check".
	Backend []string
}

// StartHAProxy starts a private HAProxy with the frontends given and stops
// it when the test ends. It skips the test when HAProxy is not installed
// and fails it, with HAProxy's output, when HAProxy does not start. Every
// call makes its own instance (folder and ports).
func StartHAProxy(t testing.TB, frontends ...HAProxyFrontend) *HAProxy {
	t.Helper()
	bin := LookPath(t, "haproxy")
	dmn := newDaemon(t, "haproxy", "haproxy.log")
	h := &HAProxy{Dir: dmn.dir, daemon: dmn}
	// HAProxy sends its traffic log as syslog datagrams to a socket of
	// ours; each becomes a line of haproxy.log.
	h.receiveLog(t)
	dmn.startOnFreePorts(t, len(frontends), func(ports []int) (stop func(), err error) {
		h.Addrs = h.Addrs[:0]
		for _, port := range ports {
			h.Addrs = append(h.Addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		}
		return h.start(bin, haproxyConfig{Dir: h.Dir, Ports: ports, Frontends: frontends})
	})
	return h
}

// LogContains reports whether HAProxy's traffic log has s. HAProxy logs a
// connection, with the client's address and port as it saw them, as soon
// as the server accepted it (option logasap): poll it.
func (h *HAProxy) LogContains(s string) bool { return h.logContains(s) }

// ServerState returns the state of the server behind frontend i as the
// stats socket reports it: its status ("UP", "DOWN", "UP 1/3" when going
// down, "no check") and the result of its last health check ("INI" before
// the first, "L4OK", "L7OK", "L7RSP", … or "" without checks). HAProxy's
// "* " before a result, for a check in progress, is left out.
func (h *HAProxy) ServerState(t testing.TB, i int) (status, check string) {
	t.Helper()
	rows, err := h.stats()
	if err != nil {
		t.Fatalf("haproxy: %v", err)
	}
	pxname, svname := fmt.Sprintf("b%d", i), fmt.Sprintf("s%d", i)
	for _, row := range rows {
		if row["pxname"] == pxname && row["svname"] == svname {
			return row["status"], strings.TrimPrefix(row["check_status"], "* ")
		}
	}
	t.Fatalf("haproxy: no server %s/%s in show stat", pxname, svname)
	return "", ""
}

// DialFrom is Dial over TCP from the IP address src, such as "127.0.0.2":
// a client that the servers behind HAProxy can tell from HAProxy itself on
// 127.0.0.1. All of 127.0.0.0/8 is the loopback on Linux; where src
// cannot be bound (macOS has only 127.0.0.1), the client connects from
// the system's choice, and the test logs it.
func DialFrom(t testing.TB, src, addr string) *Client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Logf("cannot connect from %s, connecting from any address: %v", src, err)
		return Dial(t, "tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &Client{t: t, Conn: conn, R: bufio.NewReader(conn)}
}

// haproxyConfig fills haproxyConf.
type haproxyConfig struct {
	Dir       string
	Ports     []int // one for each frontend
	Frontends []HAProxyFrontend
}

// start writes the configuration, runs HAProxy in the foreground in its
// own process group and waits until it serves. The returned func stops it.
func (h *HAProxy) start(bin string, cfg haproxyConfig) (stop func(), err error) {
	conf := filepath.Join(h.Dir, "haproxy.cfg")
	if err := writeTemplate(conf, haproxyConf, cfg); err != nil {
		return nil, err
	}
	p, err := h.run(bin, "-f", conf, "-db")
	if err != nil {
		return nil, err
	}
	stop = func() {
		// SIGTERM is HAProxy's hard stop: it closes everything and exits.
		p.stop(2*time.Second, func() []int {
			p.cmd.Process.Signal(syscall.SIGTERM)
			return nil
		})
	}
	// HAProxy binds every listener before it serves the stats socket (a
	// port taken makes it exit with "Address already in use"), so an
	// answer there means the frontends are ours. Dialling a frontend to
	// find out could reach another process on a port we lost, and would
	// make a connection to the server behind it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.stats()
		if err == nil {
			return stop, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited during start-up: %v", p.cmd, p.err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("stats socket not answering after 10s: %v", err)
		}
	}
}

// stats returns the rows of "show stat" on the stats socket, each by
// column name.
func (h *HAProxy) stats() ([]map[string]string, error) {
	c, err := net.DialTimeout("unix", filepath.Join(h.Dir, "stats.sock"), time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	// "# pxname,svname,…", then a row for every frontend, server and
	// backend, then an empty line; HAProxy closes the connection after it.
	r := bufio.NewReader(c)
	if b, err := r.Peek(2); err != nil || string(b) != "# " {
		return nil, fmt.Errorf("show stat: no header (%q, %v)", b, err)
	}
	r.Discard(2)
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	records, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	header, rows := records[0], make([]map[string]string, 0, len(records)-1)
	for _, rec := range records[1:] {
		row := map[string]string{}
		for i, v := range rec {
			if i < len(header) {
				row[header[i]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// receiveLog opens the unix datagram socket that HAProxy sends its log to
// and appends every message, as a line, to the instance's log file, until
// the test ends.
func (h *HAProxy) receiveLog(t testing.TB) {
	t.Helper()
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(h.Dir, "log.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatalf("haproxy: %v", err)
	}
	// Closed after HAProxy stops: cleanups run last registered first.
	t.Cleanup(func() { sock.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return // closed
			}
			// Open for every message: a restart removes the file.
			f, err := os.OpenFile(filepath.Join(h.Dir, h.log), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				continue
			}
			f.Write(append([]byte(strings.TrimRight(string(buf[:n]), "\n")), '\n'))
			f.Close()
		}
	}()
}

// haproxyConf is a complete configuration (nothing from /etc/haproxy) for
// HAProxy 2.x.
var haproxyConf = template.Must(template.New("haproxy.cfg").Parse(`# Written by internal/testutil for one test run.
global
    # No SO_REUSEPORT: a port that another process holds fails the start
    # rather than sharing the connections with it.
    noreuseport
    stats socket {{.Dir}}/stats.sock mode 600 level user
    log {{.Dir}}/log.sock format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    option logasap
    option log-health-checks
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    # For proxy-v2-options unique-id.
    unique-id-format %{+X}o\ %ci:%cp_%fi:%fp_%Ts_%rt
{{range $i, $f := .Frontends}}
frontend f{{$i}}
    bind 127.0.0.1:{{index $.Ports $i}}
    default_backend b{{$i}}

backend b{{$i}}
{{- range .Backend}}
    {{.}}
{{- end}}
    server s{{$i}} {{.Server}} {{.Options}}
{{end}}`))
