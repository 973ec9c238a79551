// Package metrics counts what a mail proxy does and exports the counts to
// Prometheus: connections, TLS handshakes, logins, the Authenticator's
// latency and errors, backend connections, bytes relayed, sessions ended
// by a limit, and the lookups of resolvers by zone, as Angie's API counts
// those of a resolver's status_zone.
//
// A [Collector] is a prometheus.Collector: register it, and set it as the
// Metrics of each server's session.Config (and, for a resolver, give
// [Collector.Resolver] of its zone as resolver.Config.Metrics). The config
// package does both from config.Options.Metrics. Give the same Collector
// to the servers of each new configuration: after a reload they report
// into the same series.
//
//	c := metrics.New()
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(c)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//	srv := &imap.Server{Config: session.Config{Metrics: c, Auth: route}}
//
// Labels are the listener's address (server), the protocol, and a result,
// kind, limit or direction from a short fixed list; never a user name or
// a client address, which would leak who logs in and grow without bound.
package metrics

import (
	"time"

	"github.com/mailproxy/mailproxy/resolver"
	"github.com/mailproxy/mailproxy/session"
	"github.com/prometheus/client_golang/prometheus"
)

// namespace prefixes every metric's name.
const namespace = "mailproxy"

// latencyBuckets are the bounds, in seconds, of the latency histograms:
// from a millisecond to the minute that auth_http_timeout and timeout
// default to.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Collector holds the counts of the sessions of any number of servers and
// of the resolvers' zones. It implements prometheus.Collector,
// session.Metrics and config.Metrics. The zero value is not usable: call
// [New].
type Collector struct {
	connsOpen      *prometheus.GaugeVec
	connsTotal     *prometheus.CounterVec
	tls            *prometheus.CounterVec
	logins         *prometheus.CounterVec
	authDuration   *prometheus.HistogramVec
	authErrors     *prometheus.CounterVec
	backendConnect *prometheus.HistogramVec
	backendErrors  *prometheus.CounterVec
	relayed        *prometheus.CounterVec
	limited        *prometheus.CounterVec

	resolverQueries   *prometheus.CounterVec
	resolverResponses *prometheus.CounterVec
	resolverDuration  *prometheus.HistogramVec

	all []prometheus.Collector
}

// New returns a Collector with every count at zero.
func New() *Collector {
	server := []string{"server", "protocol"}
	with := func(label string) []string { return append(server[:2:2], label) }
	c := &Collector{
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "connections_open",
			Help: "Client connections open, in the dialogue or relayed."}, server),
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "connections_total",
			Help: "Client connections accepted."}, server),
		tls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tls_handshakes_total",
			Help: "TLS handshakes with clients (listen ... ssl, STARTTLS), by result: ok or failed."}, with("result")),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "logins_total",
			Help: "Logins decided by the Authenticator, by result: accepted, refused, or failed (no decision)."}, with("result")),
		authDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "auth_duration_seconds",
			Help: "Time the Authenticator (auth_http) took to answer.", Buckets: latencyBuckets}, server),
		authErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "auth_errors_total",
			Help: "Authenticator calls without a decision, by kind: timeout, connect, invalid, error."}, with("kind")),
		backendConnect: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "backend_connect_duration_seconds",
			Help: "Time a connection to a backend took to open.", Buckets: latencyBuckets}, server),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "backend_errors_total",
			Help: "Backends a logged-in session could not be proxied to, by kind: refused, timeout, connect, proxy_protocol, login."}, with("kind")),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "relayed_bytes_total",
			Help: "Bytes relayed after login, by direction: to_backend or to_client; counted when the session ends."}, with("direction")),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sessions_limited_total",
			Help: "Sessions closed by a limit: timeout, max_errors, max_commands, line_too_long, proxy_timeout, max_connections."}, with("limit")),

		resolverQueries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "resolver_queries_total",
			Help: "Questions asked of a resolver's status_zone, as Angie counts them, by type: addr (PTR) or name (A, AAAA)."}, []string{"zone", "type"}),
		resolverResponses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "resolver_responses_total",
			Help: "Answers to a resolver's status_zone's questions, as Angie counts them, by code: success, timedout, format_error, server_failure, not_found, unimplemented, refused, other."}, []string{"zone", "code"}),
		resolverDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "resolver_duration_seconds",
			Help: "Time the name servers of a resolver's status_zone took over a question the cache could not answer.", Buckets: latencyBuckets}, []string{"zone"}),
	}
	c.all = []prometheus.Collector{c.connsOpen, c.connsTotal, c.tls, c.logins, c.authDuration, c.authErrors,
		c.backendConnect, c.backendErrors, c.relayed, c.limited,
		c.resolverQueries, c.resolverResponses, c.resolverDuration}
	return c
}

// Describe sends the descriptions of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.all {
		m.Describe(ch)
	}
}

// Collect sends the current counts.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.all {
		m.Collect(ch)
	}
}

// Listener returns the counts of the sessions a server accepts on the
// listener at addr. Every series of the listener exists from then on, at
// zero until something happens.
func (c *Collector) Listener(protocol, addr string) session.ListenerMetrics {
	l := []string{addr, protocol}
	with := func(v string) []string { return append(l[:2:2], v) }
	m := &listener{
		open:           c.connsOpen.WithLabelValues(l...),
		total:          c.connsTotal.WithLabelValues(l...),
		tlsOK:          c.tls.WithLabelValues(with("ok")...),
		tlsFailed:      c.tls.WithLabelValues(with("failed")...),
		authDuration:   c.authDuration.WithLabelValues(l...),
		backendConnect: c.backendConnect.WithLabelValues(l...),
		toBackend:      c.relayed.WithLabelValues(with("to_backend")...),
		toClient:       c.relayed.WithLabelValues(with("to_client")...),
		logins:         map[session.AuthOutcome]prometheus.Counter{},
		authErrors:     map[session.AuthOutcome]prometheus.Counter{},
		backendErrors:  map[session.BackendFailure]prometheus.Counter{},
		limits:         map[session.Limit]prometheus.Counter{},
	}
	accepted, refused, failed := c.logins.WithLabelValues(with("accepted")...), c.logins.WithLabelValues(with("refused")...), c.logins.WithLabelValues(with("failed")...)
	m.logins[session.AuthAccepted], m.logins[session.AuthRefused] = accepted, refused
	for _, o := range []session.AuthOutcome{session.AuthTimeout, session.AuthConnect, session.AuthInvalid, session.AuthError} {
		m.logins[o] = failed
		m.authErrors[o] = c.authErrors.WithLabelValues(with(string(o))...)
	}
	for _, f := range []session.BackendFailure{session.BackendRefused, session.BackendTimeout, session.BackendConnect, session.BackendProxyProtocol, session.BackendLogin} {
		m.backendErrors[f] = c.backendErrors.WithLabelValues(with(string(f))...)
	}
	for _, lim := range []session.Limit{session.LimitTimeout, session.LimitMaxErrors, session.LimitMaxCommands, session.LimitLineTooLong, session.LimitProxyTimeout, session.LimitConnections} {
		m.limits[lim] = c.limited.WithLabelValues(with(string(lim))...)
	}
	return m
}

// listener is the counts of one listener, looked up once: a session's
// report is an atomic add. The maps are only read after Listener.
type listener struct {
	open                prometheus.Gauge
	total               prometheus.Counter
	tlsOK, tlsFailed    prometheus.Counter
	authDuration        prometheus.Observer
	backendConnect      prometheus.Observer
	toBackend, toClient prometheus.Counter
	logins, authErrors  map[session.AuthOutcome]prometheus.Counter
	backendErrors       map[session.BackendFailure]prometheus.Counter
	limits              map[session.Limit]prometheus.Counter
}

func (l *listener) Opened() {
	l.total.Inc()
	l.open.Inc()
}

func (l *listener) Closed(limit session.Limit) {
	l.open.Dec()
	inc(l.limits, limit)
}

func (l *listener) TLSHandshake(ok bool) {
	if ok {
		l.tlsOK.Inc()
	} else {
		l.tlsFailed.Inc()
	}
}

func (l *listener) Auth(took time.Duration, outcome session.AuthOutcome) {
	l.authDuration.Observe(took.Seconds())
	inc(l.logins, outcome)
	inc(l.authErrors, outcome)
}

func (l *listener) BackendConnected(took time.Duration) {
	l.backendConnect.Observe(took.Seconds())
}

func (l *listener) BackendFailed(why session.BackendFailure) { inc(l.backendErrors, why) }

func (l *listener) Relayed(toBackend, toClient int64) {
	l.toBackend.Add(float64(toBackend))
	l.toClient.Add(float64(toClient))
}

// inc adds one to the counter of k, when k has one: a value that is not
// one of the package session's constants is not counted.
func inc[K comparable](counters map[K]prometheus.Counter, k K) {
	if c, ok := counters[k]; ok {
		c.Inc()
	}
}

// Resolver returns the counts of the resolvers of zone (status_zone=zone),
// for resolver.Config.Metrics. Resolvers that name the same zone count
// together, as in Angie.
func (c *Collector) Resolver(zone string) resolver.Metrics {
	z := &zoneMetrics{
		queries:   map[resolver.QueryKind]prometheus.Counter{},
		responses: map[resolver.Response]prometheus.Counter{},
		duration:  c.resolverDuration.WithLabelValues(zone),
	}
	for _, k := range []resolver.QueryKind{resolver.QueryAddr, resolver.QueryName} {
		z.queries[k] = c.resolverQueries.WithLabelValues(zone, string(k))
	}
	for _, r := range []resolver.Response{resolver.ResponseSuccess, resolver.ResponseTimedOut, resolver.ResponseFormatError,
		resolver.ResponseServerFailure, resolver.ResponseNotFound, resolver.ResponseUnimplemented, resolver.ResponseRefused, resolver.ResponseOther} {
		z.responses[r] = c.resolverResponses.WithLabelValues(zone, string(r))
	}
	return z
}

// zoneMetrics is the counts of one resolver zone.
type zoneMetrics struct {
	queries   map[resolver.QueryKind]prometheus.Counter
	responses map[resolver.Response]prometheus.Counter
	duration  prometheus.Observer
}

func (z *zoneMetrics) Lookup(kind resolver.QueryKind, response resolver.Response) {
	inc(z.queries, kind)
	inc(z.responses, response)
}

func (z *zoneMetrics) Exchange(took time.Duration) { z.duration.Observe(took.Seconds()) }

var (
	_ prometheus.Collector    = (*Collector)(nil)
	_ session.Metrics         = (*Collector)(nil)
	_ session.ListenerMetrics = (*listener)(nil)
	_ resolver.Metrics        = (*zoneMetrics)(nil)
)
