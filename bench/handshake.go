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
		caches := map[string]tls.ClientSessionCache{}
		h.eachTurn(ctx, contenders, rate, func(round int, c *contender) {
			addr := c.addrs["imaps"]
			var cache tls.ClientSessionCache
			if mode == "resumed" {
				if caches[c.name] == nil {
					caches[c.name] = tls.NewLRUClientSessionCache(64)
					// A first handshake brings the ticket.
					if _, err := tlsHandshake(ctx, h.src, addr, 0, clientTLS(caches[c.name])); err != nil {
						h.res.note("tls %s, %s: %v", cas, c.name, err)
						return
					}
				}
				cache = caches[c.name]
			}
			var resumed atomic.Int64
			var once sync.Once
			l := h.timedLoad(ctx, "tls", cas, "handshakes/s", "handshake", c, round, tlsConcurrency, func(ctx context.Context, i int) error {
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
			if mode == "resumed" && int(resumed.Load()) < l.sessions {
				h.res.note("tls %s, %s, round %d: %d of %d handshakes resumed", cas, c.name, round+1, resumed.Load(), l.sessions)
			}
		})
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
