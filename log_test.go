package mailproxy_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/errorlog"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// logged is a line a session must log: its level, message and action.
type logged struct{ level, msg, action string }

// readLogs reads back every line of logs, in either format.
func readLogs(t *testing.T, format errorlog.Format, logs string) []*testutil.LogLine {
	t.Helper()
	var lines []*testutil.LogLine
	for _, s := range strings.Split(strings.TrimSuffix(logs, "\n"), "\n") {
		if s == "" {
			continue
		}
		if format == errorlog.Nginx {
			l, err := testutil.ParseLogLine(s)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("%v: %s", err, s)
		}
		l := &testutil.LogLine{Level: fmt.Sprint(m["level"]), Msg: fmt.Sprint(m["msg"]), Attrs: map[string]string{}}
		if conn, ok := m[errorlog.ConnKey]; ok {
			l.Conn = fmt.Sprint(conn)
		}
		if action, ok := m[errorlog.ActionKey]; ok {
			l.Action = fmt.Sprint(action)
		}
		for k, v := range m {
			l.Keys = append(l.Keys, k)
			l.Attrs[k] = fmt.Sprint(v)
		}
		lines = append(lines, l)
	}
	return lines
}

// sessionLines returns the lines of the session whose client used port:
// those with the connection number of its "client connected" line.
func sessionLines(lines []*testutil.LogLine, port int) []*testutil.LogLine {
	conn := ""
	var out []*testutil.LogLine
	for _, l := range lines {
		if l.Msg == "client connected" && l.Attrs["client_port"] == strconv.Itoa(port) {
			conn = l.Conn
		}
		if conn != "" && l.Conn == conn {
			out = append(out, l)
		}
	}
	return out
}

// Every session event is logged at nginx's level, with the session's
// connection number and addresses, in nginx's lines and in JSON lines.
func TestSessionLogLines(t *testing.T) {
	for _, format := range []errorlog.Format{errorlog.Nginx, errorlog.JSON} {
		t.Run(format.String(), func(t *testing.T) { testSessionLogLines(t, format) })
	}
}

func testSessionLogLines(t *testing.T, format errorlog.Format) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := closed.Addr().String()
	closed.Close() // a backend that refuses connections

	var logs testutil.Buffer
	log := slog.New(errorlog.NewHandler(&logs, &errorlog.HandlerOptions{Level: errorlog.LevelDebug, Format: format}))
	tlsConfig := testutil.ServerTLS(t)
	cfg := session.Config{
		Logger: log, MaxErrors: 2, MaxCommands: 4,
		Auth: auth.Static{"alice": {Password: "pw", Backend: backend}},
		TLS:  &session.TLS{Config: tlsConfig, StartTLS: session.StartTLSOn},
	}
	quick := cfg
	quick.Timeout = 200 * time.Millisecond
	p := start(t, &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Listen: []mailproxy.ListenConfig{local("127.0.0.1:0"), {Address: "127.0.0.1:0", SSL: true}}, Server: &imap.Server{Config: cfg}},
		{Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")}, Server: &imap.Server{Config: quick}},
	}})
	plain, implicit, slow := p.ServerAddrs(0)[0].String(), p.ServerAddrs(0)[1].String(), p.ServerAddrs(1)[0].String()
	client := &tls.Config{InsecureSkipVerify: true}

	inAuth, handshaking := "in auth state", "SSL handshaking"
	tests := []struct {
		name string
		addr string
		run  func(c *testutil.Client)
		want []logged
	}{
		{"closed", plain, func(c *testutil.Client) { c.Line() }, []logged{
			{"info", "client connected", ""}, {"info", "client closed connection", inAuth}}},
		{"timed out", slow, func(c *testutil.Client) { c.Line(); drain(c) }, []logged{{"info", "client timed out", inAuth}}},
		{"too long command", plain, func(c *testutil.Client) { c.Line(); c.Send("a %s", strings.Repeat("x", 5000)); drain(c) }, []logged{
			{"info", "client sent too long command", inAuth}}},
		{"too many invalid commands", plain, func(c *testutil.Client) { c.Line(); c.Send("x"); c.Send("y"); drain(c) }, []logged{
			{"info", "client sent too many invalid commands", inAuth}}},
		{"too many commands", plain, func(c *testutil.Client) {
			c.Line()
			for i := range 5 {
				c.Send("%d NOOP", i)
			}
			drain(c)
		}, []logged{{"info", "client sent too many commands", inAuth}}},
		{"invalid base64", plain, func(c *testutil.Client) { c.Line(); c.Send("a AUTHENTICATE PLAIN !!!"); c.Line() }, []logged{
			{"info", "client sent invalid base64 encoding in SASL response", inAuth}}},
		{"backend down", plain, func(c *testutil.Client) { c.Line(); c.Send("a LOGIN alice pw"); c.Line() }, []logged{
			{"error", "backend login failed", ""}}},
		{"STARTTLS", plain, func(c *testutil.Client) {
			c.Line()
			c.Cmd("a STARTTLS", "a ")
			c.StartTLS(client)
			c.Cmd("b NOOP", "b ")
		}, []logged{
			{"debug", "TLS handshake done", ""}}},
		{"TLS handshake failed", implicit, func(c *testutil.Client) { c.Send("a LOGIN in clear text"); drain(c) }, []logged{
			{"info", "TLS handshake failed", handshaking}}},
		{"peer closed in the handshake", implicit, func(c *testutil.Client) {}, []logged{
			{"info", "peer closed connection in SSL handshake", handshaking}}},
	}
	conns := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testutil.Dial(t, "tcp", tt.addr)
			port := c.Conn.LocalAddr().(*net.TCPAddr).Port
			tt.run(c)
			c.Conn.Close()
			var lines []*testutil.LogLine
			missing := tt.want[0]
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				lines = sessionLines(readLogs(t, format, logs.String()), port)
				if missing = firstMissing(lines, tt.want); missing == (logged{}) {
					break
				}
			}
			if missing != (logged{}) {
				t.Fatalf("no line %+v among\n%s", missing, lineText(lines))
			}
			first := lines[0]
			if first.Level != "info" || first.Attrs["client"] != "127.0.0.1" || first.Attrs["server"] != tt.addr {
				t.Errorf("connected line %+v", first)
			}
			if other, dup := conns[first.Conn]; dup {
				t.Errorf("connection number %s of %q given to %q too", first.Conn, other, tt.name)
			}
			conns[first.Conn] = tt.name
			checkAttrs(t, tt.name, lines, backend)
		})
	}
}

// firstMissing returns the first of want that lines lack, in order; the
// zero logged when none is missing.
func firstMissing(lines []*testutil.LogLine, want []logged) logged {
	i := 0
	for _, l := range lines {
		if i < len(want) && l.Level == want[i].level && l.Msg == want[i].msg && l.Action == want[i].action {
			i++
		}
	}
	if i < len(want) {
		return want[i]
	}
	return logged{}
}

// drain reads until the server closes the connection.
func drain(c *testutil.Client) {
	io.Copy(io.Discard, c.R)
}

// checkAttrs checks what the lines of some events carry.
func checkAttrs(t *testing.T, name string, lines []*testutil.LogLine, backend string) {
	t.Helper()
	for _, l := range lines {
		switch l.Msg {
		case "backend login failed":
			if l.Attrs["user"] != "alice" || l.Attrs["backend"] != backend || !strings.Contains(l.Attrs["err"], "refused") {
				t.Errorf("%s: %+v", name, l.Attrs)
			}
		case "TLS handshake done":
			if l.Attrs["ssl_protocol"] != "TLSv1.3" || !strings.HasPrefix(l.Attrs["ssl_cipher"], "TLS_") {
				t.Errorf("%s: %+v", name, l.Attrs)
			}
		}
	}
}

func lineText(lines []*testutil.LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%+v\n", *l)
	}
	return b.String()
}
