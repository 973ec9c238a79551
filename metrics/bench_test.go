package metrics_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/metrics"
	"github.com/mailproxy/mailproxy/session"
)

// BenchmarkLoginReports measures what the hooks cost one session that
// logs in and is relayed: the reports it makes to its listener's counts,
// from every core at once (the counts are shared).
func BenchmarkLoginReports(b *testing.B) {
	m := metrics.New().Listener("imap", "127.0.0.1:143")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Opened()
			m.Auth(3*time.Millisecond, session.AuthAccepted)
			m.BackendConnected(200 * time.Microsecond)
			m.Relayed(120, 4096)
			m.Closed("")
		}
	})
}

// BenchmarkIMAPLogin runs whole IMAP sessions through a proxy (connect,
// LOGIN, LOGOUT), without Metrics and with a Collector, to show that the
// hooks are lost in the cost of a login.
func BenchmarkIMAPLogin(b *testing.B) {
	be, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "bench", Password: "secret"}}, Logger: testutil.Discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	for _, tt := range []struct {
		name    string
		metrics session.Metrics
	}{{"off", nil}, {"on", metrics.New()}} {
		b.Run(tt.name, func(b *testing.B) {
			srv := &imap.Server{Config: session.Config{
				Auth:    auth.Static{"bench": {Password: "secret", Backend: be.Addr}},
				Logger:  testutil.Discard,
				Metrics: tt.metrics,
			}}
			addr := testutil.Serve(b, srv)
			for b.Loop() {
				if err := imapLogin(addr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// imapLogin runs one session: greeting, LOGIN, LOGOUT.
func imapLogin(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	expect := func(prefix string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.HasPrefix(line, prefix) {
				return nil
			}
			if !strings.HasPrefix(line, "* ") {
				return fmt.Errorf("got %q, want %q", line, prefix)
			}
		}
	}
	if err := expect("* OK"); err != nil {
		return err
	}
	fmt.Fprintf(c, "a LOGIN bench secret\r\n")
	if err := expect("a OK"); err != nil {
		return err
	}
	fmt.Fprintf(c, "b LOGOUT\r\n")
	return expect("b OK")
}
