package mailproxy_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// handshakeBench is an IMAP server of the proxy on a plain listener and on
// implicit TLS ones with an ECDSA and an RSA certificate.
type handshakeBench struct {
	plain string
	tls   map[string]string // key type → address
	ca    *testutil.Cert
}

func startHandshakeBench(tb testing.TB) *handshakeBench {
	ca := testutil.NewCA(tb, "bench CA")
	hb := &handshakeBench{tls: map[string]string{}, ca: ca}
	certs := map[string]tls.Certificate{
		"ecdsa": ca.Issue(tb, testutil.CertOptions{Key: testutil.ECDSA}).TLS(),
		"rsa":   ca.Issue(tb, testutil.CertOptions{Key: testutil.RSA}).TLS(),
	}
	cfg := &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name: "plain", Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}},
		Server: dialogues[0].server(session.Config{Logger: testutil.Discard}),
	}}}
	certs["ecdsa-x25519"] = certs["ecdsa"]
	for _, kind := range []string{"ecdsa", "rsa", "ecdsa-x25519"} {
		settings := &session.TLS{Config: &tls.Config{Certificates: []tls.Certificate{certs[kind]}}}
		if kind == "ecdsa-x25519" { // ssl_ecdh_curve X25519: no post-quantum hybrid
			settings.Config.CurvePreferences = []tls.CurveID{tls.X25519}
		}
		cfg.Servers = append(cfg.Servers, mailproxy.ServerConfig{
			Name: kind, Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0", SSL: true}},
			Server: dialogues[0].server(session.Config{Logger: testutil.Discard, TLS: settings}),
		})
	}
	p := &mailproxy.Proxy{Config: cfg}
	if err := p.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	hb.plain = p.ServerAddrs(0)[0].String()
	for i, kind := range []string{"ecdsa", "rsa", "ecdsa-x25519"} {
		hb.tls[kind] = p.ServerAddrs(i + 1)[0].String()
	}
	return hb
}

// greeting connects to addr, with TLS when cfg is set, reads the greeting
// and closes. It reports whether the TLS session was resumed.
func greeting(addr string, cfg *tls.Config) (resumed bool, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if cfg != nil {
		tc := tls.Client(conn, cfg)
		conn = tc
		defer func() { resumed = tc.ConnectionState().DidResume }()
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err == nil && !strings.HasPrefix(line, "* OK") {
		err = fmt.Errorf("greeting %q", line)
	}
	return false, err
}

// clientConfig returns a client configuration for hb's certificates;
// resume keeps sessions (tickets) for resumption.
func (hb *handshakeBench) clientConfig(resume bool) *tls.Config {
	cfg := &tls.Config{RootCAs: testutil.Pool(hb.ca), ServerName: "localhost"}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	return cfg
}

// The cases of BenchmarkTLSHandshake: the plain greeting first, the
// baseline of the others.
var handshakeCases = []struct {
	name, key string
	resume    bool
}{
	{"plain", "", false},
	{"ecdsa-full", "ecdsa", false},
	{"rsa-full", "rsa", false},
	{"ecdsa-x25519-full", "ecdsa-x25519", false},
	{"ecdsa-resumed", "ecdsa", true},
	{"rsa-resumed", "rsa", true},
}

func (hb *handshakeBench) target(key string, resume bool) (string, *tls.Config) {
	if key == "" {
		return hb.plain, nil
	}
	return hb.tls[key], hb.clientConfig(resume)
}

// BenchmarkTLSHandshake measures connections per second to an IMAP server
// of the proxy, from connect to greeting: over plain TCP (the baseline),
// with a full TLS 1.3 handshake for an ECDSA P-256 and an RSA 2048
// certificate, with X25519 alone as the key exchange instead of Go's
// default X25519MLKEM768 hybrid, and with resumed handshakes (session
// tickets). Each TLS run
// reports its time as a multiple of the plain runs' ("x-plain").
func BenchmarkTLSHandshake(b *testing.B) {
	hb := startHandshakeBench(b)
	var plain []float64
	for _, hc := range handshakeCases {
		b.Run(hc.name, func(b *testing.B) {
			addr, cfg := hb.target(hc.key, hc.resume)
			if _, err := greeting(addr, cfg); err != nil { // a ticket for the resumed runs
				b.Fatal(err)
			}
			ops := 0
			for b.Loop() {
				resumed, err := greeting(addr, cfg)
				if err != nil || resumed != hc.resume {
					b.Fatalf("resumed %v, err %v", resumed, err)
				}
				ops++
			}
			nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(ops)
			b.ReportMetric(1e9/nsPerOp, "conns/s")
			if hc.key == "" {
				plain = append(plain, nsPerOp)
			} else if len(plain) > 0 {
				b.ReportMetric(nsPerOp/plain[len(plain)-1], "x-plain")
			}
		})
	}
}

// Each benchmark case once, so that go test runs the benchmark's code.
func TestTLSHandshakeBenchCases(t *testing.T) {
	hb := startHandshakeBench(t)
	for _, hc := range handshakeCases {
		addr, cfg := hb.target(hc.key, hc.resume)
		for i := range 2 {
			resumed, err := greeting(addr, cfg)
			if err != nil || resumed != (hc.resume && i == 1) {
				t.Fatalf("%s, connection %d: resumed %v, err %v", hc.name, i, resumed, err)
			}
		}
	}
}
