package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// idleTimeout bounds the opening and the check of one idle session:
// shorter than a login session's, as a proxy out of descriptors may
// leave a client waiting for a greeting that never comes.
const idleTimeout = 5 * time.Second

// idleOpeners is how many clients open the idle sessions at once.
const idleOpeners = 64

// maxIdleFailures ends the opening: a proxy at its limit has answered.
const maxIdleFailures = 200

// idleScenario runs scenario 3: for each proxy, on an instance started
// for the purpose, N authenticated IMAP sessions left idle, and what they
// hold: resident memory and descriptors per session, summed over the
// proxy's processes, as deltas from the instance at rest.
func (h *harness) idleScenario(ctx context.Context) {
	n := h.opts.idle
	// The bench holds both ends the proxies do not: a client socket and
	// a backend socket per session.
	if most := int(h.fileLimit-1024) / 2; n > most {
		h.res.note("idle: %d sessions asked, %d tried: RLIMIT_NOFILE is %d and could not be raised (its hard limit; raising that needs CAP_SYS_RESOURCE), and the bench holds two descriptors a session",
			n, most, h.fileLimit)
		n = most
	}
	cases := []string{"imap"}
	if h.opts.tls {
		cases = append(cases, "imaps")
	}
	for _, listener := range cases {
		cas := fmt.Sprintf("imap plain, %d sessions", n)
		var tlsConf *tls.Config
		if listener == "imaps" {
			cas = fmt.Sprintf("imap TLS, %d sessions", n)
			tlsConf = clientTLS(nil)
		}
		held := h.res.row("idle", cas, "sessions held", "", true)
		rss := h.res.row("idle", cas, "RSS/session", "KiB", false)
		fds := h.res.row("idle", cas, "fds/session", "", false)
		for _, name := range h.opts.contenders {
			if name == direct {
				continue
			}
			if err := ctx.Err(); err != nil {
				return
			}
			t := time.Now()
			c, err := h.startContender(name, h.dir+"/idle-"+listener+"-"+name, "idle-"+listener)
			h.logf("idle %s %s: started in %v", cas, name, time.Since(t))
			if err != nil {
				h.res.note("idle %s: %v", name, err)
				continue
			}
			if c.down != "" {
				held.fig(name).Note = c.down
				continue
			}
			time.Sleep(300 * time.Millisecond)
			before := c.usage()
			t = time.Now()
			conns, firstErr := h.openIdle(ctx, c.addrs[listener], n, tlsConf)
			h.logf("idle %s %s: %d opened in %v", cas, name, len(conns), time.Since(t))
			time.Sleep(time.Second) // let the proxy settle
			after := c.usage()
			ok := checkIdle(conns)
			h.logf("idle %s %s: %d opened, %d answered NOOP; RSS %d → %d KiB, fds %d → %d",
				cas, name, len(conns), ok, before.rssKB, after.rssKB, before.fds, after.fds)
			for _, cn := range conns {
				cn.Close()
			}
			c.stop()
			h.checkExit(c)
			if len(conns) < n {
				h.res.note("idle %s, %s: %d of %d sessions opened (the opening stops after %d failures); the first failure: %v", cas, name, len(conns), n, maxIdleFailures, firstErr)
			}
			if ok < len(conns) {
				h.res.note("idle %s, %s: %d of the %d sessions opened no longer answered NOOP", cas, name, len(conns)-ok, len(conns))
			}
			held.fig(name).add(float64(ok))
			if len(conns) > 0 {
				rss.fig(name).add(float64(after.rssKB-before.rssKB) / float64(len(conns)))
				fds.fig(name).add(float64(after.fds-before.fds) / float64(len(conns)))
			}
		}
	}
}

// openIdle opens n logged-in IMAP sessions from idleOpeners clients
// at once, and returns those that opened and the first error.
func (h *harness) openIdle(ctx context.Context, addr string, n int, tlsConf *tls.Config) ([]*conn, error) {
	var (
		next    atomic.Int64
		failed  atomic.Int64
		mu      sync.Mutex
		conns   []*conn
		first   error
		wg      sync.WaitGroup
		started = time.Now()
	)
	for range idleOpeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && failed.Load() < maxIdleFailures && time.Since(started) < 5*time.Minute {
				i := int(next.Add(1))
				if i > n {
					return
				}
				c, err := openIdleSession(ctx, h.src, addr, i, tlsConf)
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if first == nil {
						first = err
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns, first
}

func openIdleSession(ctx context.Context, src sources, addr string, i int, tlsConf *tls.Config) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, idleTimeout)
	defer cancel()
	c, err := src.dialSize(ctx, addr, i, tlsConf, 512)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(idleTimeout))
	if err := c.imapLogin(i); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// checkIdle sends NOOP on every session and counts those that answer.
func checkIdle(conns []*conn) int {
	var ok atomic.Int64
	var wg sync.WaitGroup
	work := make(chan *conn)
	for range idleOpeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				c.SetDeadline(time.Now().Add(idleTimeout))
				if c.imapCommand("n1", "NOOP") == nil {
					ok.Add(1)
				}
			}
		}()
	}
	for _, c := range conns {
		work <- c
	}
	close(work)
	wg.Wait()
	return int(ok.Load())
}
