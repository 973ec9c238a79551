package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// tlsConcurrency is the number of clients of scenario 4.
const tlsConcurrency = 64

// tlsScenario runs scenario 4: TLS handshakes on the implicit-TLS IMAP
// listener, full and resumed (session tickets), each session a
// handshake and the greeting read after it.
func (h *harness) tlsScenario(ctx context.Context, contenders []*contender) {
	for _, mode := range []string{"full", "resumed"} {
		cas := fmt.Sprintf("imap TLS %s c=%d", mode, tlsConcurrency)
		rate := h.res.row("tls", cas, "handshakes/s", "1/s", true)
		p50 := h.res.row("tls", cas, "p50", "ms", false)
		p99 := h.res.row("tls", cas, "p99", "ms", false)
		cpu := h.res.row("tls", cas, "proxy CPU/handshake", "µs", false)
		caches := map[string]tls.ClientSessionCache{}
		for round := range h.opts.rounds {
			for k := range contenders {
				c := contenders[(k+round)%len(contenders)]
				if c.down != "" {
					rate.fig(c.name).Note = c.down
					continue
				}
				if ctx.Err() != nil {
					return
				}
				addr := c.addrs["imaps"]
				var cache tls.ClientSessionCache
				if mode == "resumed" {
					if caches[c.name] == nil {
						caches[c.name] = tls.NewLRUClientSessionCache(64)
						// A first handshake brings the ticket.
						if _, err := tlsHandshake(ctx, h.src, addr, 0, clientTLS(caches[c.name])); err != nil {
							h.res.note("tls %s, %s: %v", cas, c.name, err)
							continue
						}
					}
					cache = caches[c.name]
				}
				var resumed atomic.Int64
				var once sync.Once
				w := h.begin(c)
				l := runLoad(ctx, tlsConcurrency, h.opts.duration, maxLoginSessions, func(ctx context.Context, i int) error {
					st, err := tlsHandshake(ctx, h.src, addr, i, clientTLS(cache))
					if err == nil {
						if st.DidResume {
							resumed.Add(1)
						}
						once.Do(func() {
							if round == 0 && mode == "full" {
								h.res.note("tls: %s negotiates %s with %s (Go's client)", c.name, tls.VersionName(st.Version), st.CurveID)
							}
						})
					}
					return err
				})
				proxyCPU := h.end(w, c, "tls", cas)
				h.logf("tls %s %s round %d: %d handshakes (%d resumed), %.0f/s, p50 %.2f ms, p99 %.2f ms, %d errors",
					cas, c.name, round+1, l.sessions, resumed.Load(), l.perSecond(), l.percentile(50), l.percentile(99), l.errors)
				if l.errors > 0 {
					h.res.note("tls %s, %s, round %d: %d handshakes failed, the first: %v", cas, c.name, round+1, l.errors, l.firstErr)
					rate.fig(c.name).Note = "errors"
				}
				if mode == "resumed" && int(resumed.Load()) < l.sessions {
					h.res.note("tls %s, %s, round %d: %d of %d handshakes resumed", cas, c.name, round+1, resumed.Load(), l.sessions)
				}
				if l.sessions == 0 {
					continue
				}
				rate.fig(c.name).add(l.perSecond())
				p50.fig(c.name).add(l.percentile(50))
				p99.fig(c.name).add(l.percentile(99))
				if c.proc != nil {
					cpu.fig(c.name).add(float64(proxyCPU) / float64(time.Microsecond) / float64(l.sessions))
				}
			}
		}
	}
}

// tlsHandshake connects, shakes hands, reads the greeting and closes.
func tlsHandshake(ctx context.Context, src sources, addr string, i int, conf *tls.Config) (tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(ctx, sessionTimeout)
	defer cancel()
	c, err := src.dial(ctx, addr, i, conf)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(sessionTimeout))
	if _, err := c.expect("* OK"); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.Conn.(*tls.Conn).ConnectionState(), nil
}
