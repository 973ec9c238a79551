package metrics_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/metrics"
	"github.com/mailproxy/mailproxy/session"
)

// A program registers a Collector, serves it with promhttp, and gives it
// to its servers as their Metrics.
func Example() {
	c := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// … go http.ListenAndServe("127.0.0.1:9145", mux)

	backend, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "alice", Password: "secret"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	p := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}},
		Server: &imap.Server{Config: session.Config{
			Auth:    auth.Static{"alice": {Password: "secret", Backend: backend.Addr}},
			Metrics: c,
		}},
	}}}}
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	for _, password := range []string{"secret", "wrong"} {
		client, err := imapclient.DialInsecure(p.ServerAddrs(0)[0].String(), nil)
		if err != nil {
			log.Fatal(err)
		}
		client.Login("alice", password).Wait()
		client.Close()
	}

	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "mailproxy_logins_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					fmt.Printf("%s %s: %v\n", f.GetName(), l.GetValue(), m.GetCounter().GetValue())
				}
			}
		}
	}
	// Output:
	// mailproxy_logins_total accepted: 1
	// mailproxy_logins_total failed: 0
	// mailproxy_logins_total refused: 1
}
