package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
)

// startAuthHTTP runs an auth_http service that accepts alice/secret and
// sends her to backends[protocol], as nginx's protocol has it.
func startAuthHTTP(t *testing.T, backends map[string]string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Auth-User") != "alice" || r.Header.Get("Auth-Pass") != "secret" {
			w.Header().Set("Auth-Status", "Invalid login or password")
			return
		}
		host, port, _ := net.SplitHostPort(backends[r.Header.Get("Auth-Protocol")])
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", host)
		w.Header().Set("Auth-Port", port)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://") + "/auth"
}

// scrapeMetrics gets http://addr/metrics with a real HTTP client and
// parses it with the Prometheus text parser.
func scrapeMetrics(addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// sample returns the value of the counter of fams named name whose labels
// include labels ("name=value" each); -1 when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
next:
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, l := range labels {
			n, v, _ := strings.Cut(l, "=")
			if have[n] != v {
				continue next
			}
		}
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// The binary serves its metrics on metrics_listen: sessions through it
// and its resolver's status_zone are counted there, a reload moves the
// address and the counts go on.
func TestMetricsEndpoint(t *testing.T) {
	discard := slog.New(slog.DiscardHandler)
	users := []mailtest.User{{Name: "alice", Password: "secret"}}
	imapBackend, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer imapBackend.Close()
	smtpBackend, err := mailtest.StartSMTP(mailtest.SMTPOptions{Users: users, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer smtpBackend.Close()
	authURL := startAuthHTTP(t, map[string]string{"imap": imapBackend.Addr, "smtp": smtpBackend.Addr})
	dns := testutil.StartDNS(t, "1.0.0.127.in-addr.arpa. 60 IN PTR client.test.", "client.test. 60 IN A 127.0.0.1")

	conf := filepath.Join(t.TempDir(), "mail.conf")
	imapAddr, smtpAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	write := func(metricsAddr string) {
		src := fmt.Sprintf(`error_log stderr info;
mail {
    auth_http %s;
    metrics_listen %s;
    resolver %s status_zone=dns;
    server { listen %s; protocol imap; }
    server { listen %s; protocol smtp; }
}
`, authURL, metricsAddr, dns, imapAddr, smtpAddr)
		if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	metricsAddr := testutil.FreeAddr(t)
	write(metricsAddr)
	p := startProgram(t, "-c", conf)
	testutil.WaitFor(t, "the listeners", func() bool { return testutil.Accepting(imapAddr) && testutil.Accepting(metricsAddr) })

	imapLogin := func(password string) error {
		c, err := imapclient.DialInsecure(imapAddr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login("alice", password).Wait()
	}
	if err := imapLogin("secret"); err != nil {
		t.Fatalf("IMAP login: %v", err)
	}
	if err := imapLogin("wrong"); err == nil {
		t.Fatal("IMAP login with a wrong password succeeded")
	}
	sc, err := gosmtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatalf("SMTP login: %v", err)
	}
	sc.Quit()

	imapL := []string{"server=" + imapAddr, "protocol=imap"}
	want := map[string]float64{
		"accepted": 1, "refused": 1, "smtp": 1,
		"addr": 1, "name": 1, "success": 2, "exchanges": 2,
	}
	got := func(fams map[string]*dto.MetricFamily) map[string]float64 {
		return map[string]float64{
			"accepted":  sample(fams, "mailproxy_logins_total", append(imapL, "result=accepted")...),
			"refused":   sample(fams, "mailproxy_logins_total", append(imapL, "result=refused")...),
			"smtp":      sample(fams, "mailproxy_logins_total", "server="+smtpAddr, "protocol=smtp", "result=accepted"),
			"addr":      sample(fams, "mailproxy_resolver_queries_total", "zone=dns", "type=addr"),
			"name":      sample(fams, "mailproxy_resolver_queries_total", "zone=dns", "type=name"),
			"success":   sample(fams, "mailproxy_resolver_responses_total", "zone=dns", "code=success"),
			"exchanges": sample(fams, "mailproxy_resolver_duration_seconds", "zone=dns"),
		}
	}
	fams, err := scrapeMetrics(metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if g := got(fams); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", g, want)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}

	// A reload that moves metrics_listen: the old address is closed, the
	// new one serves the same counts, which go on.
	moved := testutil.FreeAddr(t)
	write(moved)
	p.sigs <- syscall.SIGHUP
	testutil.WaitFor(t, "the metrics to move", func() bool { return testutil.Accepting(moved) && !testutil.Accepting(metricsAddr) })
	if err := imapLogin("secret"); err != nil {
		t.Fatalf("IMAP login after the reload: %v", err)
	}
	if fams, err = scrapeMetrics(moved); err != nil {
		t.Fatal(err)
	}
	want["accepted"] = 2
	if g := got(fams); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("counts after the reload %v, want %v", g, want)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	if testutil.Accepting(moved) {
		t.Error("metrics still served after the exit")
	}
}

// metrics_listen is checked at -t, and a port taken stops the start.
func TestMetricsListenErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		name, directive string
		test            bool
		want            string
	}{
		{"bad address", "metrics_listen 127.0.0.1:http;", true, `invalid port in "127.0.0.1:http" in "metrics_listen" directive`},
		{"in a server", "server { listen 127.0.0.1:1; protocol imap; metrics_listen 9145; }", true, `"metrics_listen" directive is not allowed here`},
		{"port taken", "metrics_listen " + taken.Addr().String() + ";", false, "metrics_listen: listen tcp " + taken.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "mail.conf")
			src := "error_log stderr info;\nmail {\n  auth_http 127.0.0.1:9/auth;\n  server { listen " + testutil.FreeAddr(t) + "; protocol imap; }\n  " + tt.directive + "\n}\n"
			os.WriteFile(conf, []byte(src), 0o644)
			args := []string{"-c", conf}
			if tt.test {
				args = append(args, "-t")
			}
			var stdout, stderr testutil.Buffer
			if code := run(args, &stdout, &stderr, nil); code != 1 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}

// A client that never finishes its request, and one that stays connected
// after a scrape, are closed at the endpoint's limits.
func TestMetricsEndpointLimits(t *testing.T) {
	saved := metricsLimits
	defer func() { metricsLimits = saved }()
	metricsLimits.read, metricsLimits.idle = 300*time.Millisecond, 300*time.Millisecond
	m, addr := newMetricsServer(), testutil.FreeAddr(t)
	if err := m.listen(addr, testutil.Discard); err != nil {
		t.Fatal(err)
	}
	defer m.close()
	for _, tt := range []struct{ name, send string }{
		{"request never finished", "GET /metrics HTTP/1.1\r\nHost: x\r\n"},
		{"idle after a scrape", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testutil.Dial(t, "tcp", addr)
			c.Conn.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			c.Send("%s", strings.TrimSuffix(tt.send, "\r\n"))
			got, err := io.ReadAll(c.R)
			if took := time.Since(start); err != nil || took > 5*time.Second {
				t.Fatalf("the endpoint closed after %v (%v)", took, err)
			}
			if scraped := strings.Contains(string(got), "go_goroutines"); scraped != strings.HasSuffix(tt.send, "\r\n\r\n") {
				t.Errorf("read %.200q", got)
			}
		})
	}
}
