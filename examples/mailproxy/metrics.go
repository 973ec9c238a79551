package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailproxy/mailproxy/metrics"
)

// metricsServer serves the Prometheus metrics at /metrics on the address
// of the mail block's metrics_listen (ours; off by default), and follows
// that address across reloads. Its Collector is one for the process:
// every configuration loaded counts into it, so that the counts go on
// across reloads whether or not they are served.
type metricsServer struct {
	collector *metrics.Collector
	handler   http.Handler
	addr      string       // the address served; "" for none
	srv       *http.Server // nil when none
}

// metricsLimits bound the endpoint's connections, so that clients that
// are slow or stay idle cannot hold descriptors for ever: a scrape is a
// small GET, and Prometheus keeps its connection between scrapes (15 s
// to a minute apart).
var metricsLimits = struct{ read, write, idle time.Duration }{read: 10 * time.Second, write: 30 * time.Second, idle: 2 * time.Minute}

func newMetricsServer() *metricsServer {
	c := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &metricsServer{collector: c, handler: mux}
}

// listen serves the metrics on addr from now on, "" for nowhere. When
// addr cannot be listened on, the metrics stay where they were and the
// error is returned.
func (m *metricsServer) listen(addr string, log *slog.Logger) error {
	if addr == m.addr {
		return nil
	}
	var ln net.Listener
	if addr != "" {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("metrics_listen: %w", err)
		}
	}
	m.close()
	m.addr = addr
	if ln == nil {
		return nil
	}
	m.srv = &http.Server{Handler: m.handler, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ReadHeaderTimeout: metricsLimits.read, ReadTimeout: metricsLimits.read, WriteTimeout: metricsLimits.write, IdleTimeout: metricsLimits.idle}
	go func(srv *http.Server) {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "listen", addr, "err", err)
		}
	}(m.srv)
	log.Info("metrics served", "url", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// close stops serving the metrics.
func (m *metricsServer) close() {
	if m.srv != nil {
		m.srv.Close()
		m.srv, m.addr = nil, ""
	}
}
