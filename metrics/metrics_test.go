package metrics_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/metrics"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// scrape fetches the metrics at url with a real HTTP client and parses
// them with the Prometheus text parser.
func scrape(t testing.TB, url string) families {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the metrics: %v", err)
	}
	return fams
}

// families are the metrics of a scrape, by name.
type families map[string]*dto.MetricFamily

// value returns the value of the sample of metric name whose labels are
// labels ("name=value" each), or -1 when there is none: a counter's or a
// gauge's value, a histogram's count.
func (f families) value(name string, labels ...string) float64 {
	fam, ok := f[name]
	if !ok {
		return -1
	}
	for _, m := range fam.Metric {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// sum adds the values of every sample of metric name.
func (f families) sum(name string) float64 {
	var n float64
	for _, m := range f[name].GetMetric() {
		n += m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	return n
}

func hasLabels(m *dto.Metric, labels []string) bool {
	have := map[string]string{}
	for _, l := range m.Label {
		have[l.GetName()] = l.GetValue()
	}
	for _, l := range labels {
		name, value, _ := strings.Cut(l, "=")
		if have[name] != value {
			return false
		}
	}
	return len(have) == len(labels)
}

// serve registers c and serves its metrics over HTTP on 127.0.0.1; it
// returns the URL.
func serve(t testing.TB, c *metrics.Collector) string {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

var discard = slog.New(slog.DiscardHandler)

// Real IMAP (over TLS), POP3 and SMTP sessions through a Proxy, with
// mailtest backends and an Authenticator of the test's: every count a
// scrape shows is what the sessions did.
func TestProxySessions(t *testing.T) {
	users := []mailtest.User{{Name: "alice", Password: "secret"}}
	imapBackend, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer imapBackend.Close()
	pop3Backend, err := mailtest.StartPOP3(mailtest.POP3Options{Users: users, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer pop3Backend.Close()
	smtpBackend, err := mailtest.StartSMTP(mailtest.SMTPOptions{Users: users, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer smtpBackend.Close()
	backends := map[string]string{"imap": imapBackend.Addr, "pop3": pop3Backend.Addr, "smtp": smtpBackend.Addr}
	dead := testutil.RefusedAddr(t)
	route := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		switch {
		case req.User == "carol":
			return nil, errors.New("the directory is down")
		case req.User == "bob":
			return &auth.Result{Backend: dead}, nil
		case req.User != "alice" || req.Password != "secret":
			return &auth.Result{Error: "Invalid login or password"}, nil
		}
		return &auth.Result{Backend: backends[req.Protocol]}, nil
	})

	c := metrics.New()
	url := serve(t, c)
	base := session.Config{Auth: route, Metrics: c, Logger: discard}
	secure := base
	secure.TLS = &session.TLS{Config: testutil.ServerTLS(t)}
	secure.ProxyTimeout = 300 * time.Millisecond
	strict := base
	strict.Timeout, strict.MaxErrors, strict.MaxCommands = 300*time.Millisecond, 2, 3
	local := []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}}
	p := &mailproxy.Proxy{Logger: discard, Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0", SSL: true}}, Server: &imap.Server{Config: secure}},
		{Listen: local, Server: &pop3.Server{Config: base}},
		{Listen: local, Server: &smtp.Server{Config: base}},
		{Listen: local, Server: &pop3.Server{Config: strict}},
	}}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr := func(i int) string { return p.ServerAddrs(i)[0].String() }
	imapAddr, pop3Addr, smtpAddr, strictAddr := addr(0), addr(1), addr(2), addr(3)
	clientTLS := &tls.Config{InsecureSkipVerify: true}

	// IMAP over TLS: a login and a mailbox, a refused login, a login left
	// idle until proxy_timeout, and a client that is no TLS client.
	ic, err := imapclient.DialTLS(imapAddr, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	if err := ic.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("IMAP login: %v", err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("IMAP select: %v", err)
	}
	if err := ic.Logout().Wait(); err != nil {
		t.Errorf("IMAP logout: %v", err)
	}
	ic.Close()
	ic, err = imapclient.DialTLS(imapAddr, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	if err := ic.Login("alice", "wrong").Wait(); err == nil {
		t.Error("IMAP login with a wrong password succeeded")
	}
	ic.Close()
	idle := testutil.DialTLS(t, imapAddr, clientTLS)
	idle.Exchange("", "* OK")
	idle.Exchange("a LOGIN alice secret\r\n", "…a OK", "<closed>") // closed by proxy_timeout
	notTLS := testutil.Dial(t, "tcp", imapAddr)
	notTLS.Exchange("a LOGIN alice secret\r\n", "<closed>")

	// POP3: a login, and one whose backend refuses the connection.
	pc := testutil.Dial(t, "tcp", pop3Addr)
	pc.Exchange("", "+OK")
	pc.Exchange("USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n", "+OK", "+OK", "+OK", "+OK", "<closed>")
	pc.Conn.Close() // the relay waits for the client's end too
	pc = testutil.Dial(t, "tcp", pop3Addr)
	pc.Exchange("", "+OK")
	pc.Exchange("USER bob\r\nPASS secret\r\n", "+OK", "-ERR")
	pc.Exchange("QUIT\r\n", "+OK", "<closed>")

	// SMTP: a login and a message, and a login the Authenticator cannot
	// decide.
	sc, err := gosmtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatalf("SMTP login: %v", err)
	}
	if err := sc.SendMail("alice@example.org", []string{"alice@example.org"}, strings.NewReader("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("SMTP send: %v", err)
	}
	sc.Quit()
	sc, err = gosmtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Auth(sasl.NewPlainClient("", "carol", "secret")); err == nil {
		t.Error("SMTP login of carol succeeded")
	}
	sc.Quit()

	// A server with low limits, broken by one client each.
	timedOut := testutil.Dial(t, "tcp", strictAddr)
	timedOut.Exchange("", "+OK", "<closed>")
	errs := testutil.Dial(t, "tcp", strictAddr)
	errs.Exchange("", "+OK")
	errs.Exchange("BOGUS\r\nBOGUS\r\n", "-ERR", "-ERR", "-ERR", "<closed>") // the last says why
	cmds := testutil.Dial(t, "tcp", strictAddr)
	cmds.Exchange("", "+OK")
	cmds.Exchange("CAPA\r\nCAPA\r\nCAPA\r\nCAPA\r\n", "….", "….", "….", "-ERR", "<closed>")
	long := testutil.Dial(t, "tcp", strictAddr)
	long.Exchange("", "+OK")
	long.Exchange(strings.Repeat("A", 5000)+"\r\n", "-ERR", "<closed>")

	var m families
	testutil.WaitFor(t, "every session to end", func() bool {
		m = scrape(t, url)
		return m.sum("mailproxy_connections_total") == 12 && m.sum("mailproxy_connections_open") == 0
	})
	srv := func(addr, proto string) []string { return []string{"server=" + addr, "protocol=" + proto} }
	imapL, pop3L, smtpL, strictL := srv(imapAddr, "imap"), srv(pop3Addr, "pop3"), srv(smtpAddr, "smtp"), srv(strictAddr, "pop3")
	with := func(l []string, more ...string) []string { return append(l[:2:2], more...) }
	tests := []struct {
		metric string
		labels []string
		want   float64
	}{
		{"mailproxy_connections_total", imapL, 4},
		{"mailproxy_connections_total", pop3L, 2},
		{"mailproxy_connections_total", smtpL, 2},
		{"mailproxy_connections_total", strictL, 4},
		{"mailproxy_connections_open", imapL, 0},
		{"mailproxy_tls_handshakes_total", with(imapL, "result=ok"), 3},
		{"mailproxy_tls_handshakes_total", with(imapL, "result=failed"), 1},
		{"mailproxy_tls_handshakes_total", with(pop3L, "result=ok"), 0},
		{"mailproxy_logins_total", with(imapL, "result=accepted"), 2},
		{"mailproxy_logins_total", with(imapL, "result=refused"), 1},
		{"mailproxy_logins_total", with(pop3L, "result=accepted"), 2},
		{"mailproxy_logins_total", with(smtpL, "result=accepted"), 1},
		{"mailproxy_logins_total", with(smtpL, "result=failed"), 1},
		{"mailproxy_auth_errors_total", with(smtpL, "kind=error"), 1},
		{"mailproxy_auth_errors_total", with(smtpL, "kind=timeout"), 0},
		{"mailproxy_auth_duration_seconds", imapL, 3},
		{"mailproxy_auth_duration_seconds", pop3L, 2},
		{"mailproxy_auth_duration_seconds", smtpL, 2},
		{"mailproxy_backend_connect_duration_seconds", imapL, 2},
		{"mailproxy_backend_connect_duration_seconds", pop3L, 1},
		{"mailproxy_backend_connect_duration_seconds", smtpL, 1},
		{"mailproxy_backend_errors_total", with(pop3L, "kind=refused"), 1},
		{"mailproxy_backend_errors_total", with(imapL, "kind=refused"), 0},
		{"mailproxy_sessions_limited_total", with(imapL, "limit=proxy_timeout"), 1},
		{"mailproxy_sessions_limited_total", with(imapL, "limit=timeout"), 0},
		{"mailproxy_sessions_limited_total", with(strictL, "limit=timeout"), 1},
		{"mailproxy_sessions_limited_total", with(strictL, "limit=max_errors"), 1},
		{"mailproxy_sessions_limited_total", with(strictL, "limit=max_commands"), 1},
		{"mailproxy_sessions_limited_total", with(strictL, "limit=line_too_long"), 1},
		{"mailproxy_sessions_limited_total", with(pop3L, "limit=timeout"), 0},
	}
	for _, tt := range tests {
		if got := m.value(tt.metric, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
		}
	}
	for _, l := range [][]string{imapL, pop3L, smtpL} {
		for _, dir := range []string{"to_backend", "to_client"} {
			if got := m.value("mailproxy_relayed_bytes_total", with(l, "direction="+dir)...); got <= 0 {
				t.Errorf("mailproxy_relayed_bytes_total%v %s = %v, want > 0", l, dir, got)
			}
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", dump(t, url))
	}
}

// A client beyond Proxy.MaxConnections is counted as a session closed by
// the max_connections limit.
func TestConnectionLimit(t *testing.T) {
	c := metrics.New()
	url := serve(t, c)
	p := &mailproxy.Proxy{Logger: discard, MaxConnections: 1, Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}},
		Server: &pop3.Server{Config: session.Config{Metrics: c, Logger: discard}},
	}}}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr := p.ServerAddrs(0)[0].String()
	first := testutil.Dial(t, "tcp", addr)
	first.Exchange("", "+OK")
	second := testutil.Dial(t, "tcp", addr)
	second.Exchange("", "-ERR", "<closed>")
	first.Exchange("QUIT\r\n", "+OK", "<closed>")
	first.Conn.Close() // else the server lingers a second on its close
	labels := []string{"server=" + addr, "protocol=pop3"}
	var m families
	testutil.WaitFor(t, "both sessions to end", func() bool {
		m = scrape(t, url)
		return m.value("mailproxy_connections_total", labels...) == 2 && m.value("mailproxy_connections_open", labels...) == 0
	})
	if got := m.value("mailproxy_sessions_limited_total", append(labels, "limit=max_connections")...); got != 1 {
		t.Errorf("sessions closed by max_connections: %v, want 1", got)
	}
}

// dump returns the text of a scrape, for a failing test's log.
func dump(t testing.TB, url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Sprint(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
