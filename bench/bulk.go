package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// bulkScenario runs scenario 2: a large message through each
// contender, a session per transfer, again and again for the length of a
// run, IMAP FETCH and POP3 RETR from the backend, SMTP DATA to
// it, plain and over implicit TLS (TLS between the client and the
// proxy; the proxies reach the backends in plain TCP).
func (h *harness) bulkScenario(ctx context.Context, contenders []*contender) {
	msg := h.backends["imap"].msg
	mib := float64(len(msg)) / (1 << 20)
	listeners := []string{""}
	if h.opts.tls {
		listeners = append(listeners, "s")
	}
	for _, proto := range h.opts.protocols {
		for _, suffix := range listeners {
			cas := fmt.Sprintf("%s %s %d MiB", proto, bulkVerbs[proto], h.opts.bulkMiB)
			var tlsConf *tls.Config
			if suffix == "s" {
				cas += " TLS"
				tlsConf = clientTLS(nil)
			} else {
				cas += " plain"
			}
			rate := h.res.row("bulk", cas, "throughput", "MiB/s", true)
			cpu := h.res.row("bulk", cas, "proxy CPU/MiB", "µs", false)
			h.eachTurn(ctx, contenders, rate, func(round int, c *contender) {
				w := h.begin(c)
				// A session per transfer, as many as fit in a run: the
				// proxy's CPU is read over all of them.
				var (
					n     int
					d     time.Duration
					err   error
					start = time.Now()
				)
				for n < maxTransfers && (n == 0 || time.Since(start) < h.opts.duration) && err == nil {
					var t time.Duration
					t, err = bulkSession(ctx, h.src, c.addrs[proto+suffix], proto, n, tlsConf, msg)
					d += t
					n++
				}
				proxyCPU := h.end(w, c, "bulk", cas)
				if err != nil {
					h.res.note("bulk %s, %s, round %d: %v", cas, c.name, round+1, err)
					rate.fig(c.name).Note = "errors"
					return
				}
				total := mib * float64(n)
				h.logf("bulk %s %s round %d: %d transfers in %v, %.0f MiB/s", cas, c.name, round+1, n, d, total/d.Seconds())
				rate.fig(c.name).add(total / d.Seconds())
				if c.proc != nil {
					cpu.fig(c.name).add(float64(proxyCPU) / float64(time.Microsecond) / total)
				}
			})
		}
	}
}

var bulkVerbs = map[string]string{"imap": "FETCH", "pop3": "RETR", "smtp": "DATA"}

// maxTransfers bounds the transfers of one run.
const maxTransfers = 64

// bulkSession logs in, moves msg once and returns how long that took,
// from the command to the reply.
func bulkSession(ctx context.Context, src sources, addr, proto string, i int, tlsConf *tls.Config, msg []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, sessionTimeout)
	defer cancel()
	c, err := src.dialSize(ctx, addr, i, tlsConf, 256<<10)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(sessionTimeout))
	switch proto {
	case "imap":
		err = c.imapLogin(i)
	case "pop3":
		err = c.pop3Login(i)
	case "smtp":
		err = c.smtpLogin(i)
	}
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = c.transfer(proto, msg)
	return time.Since(start), err
}

// transfer moves msg once: FETCH, RETR or a mail transaction.
func (c *conn) transfer(proto string, msg []byte) error {
	switch proto {
	case "imap":
		if err := c.send("f1 FETCH 1 BODY[]"); err != nil {
			return err
		}
		l, err := c.expect("* 1 FETCH")
		if err != nil {
			return err
		}
		open := strings.LastIndexByte(l, '{')
		if open < 0 {
			return fmt.Errorf("FETCH: %q", l)
		}
		if n, err := strconv.Atoi(strings.TrimSuffix(l[open+1:], "}")); err != nil || n != len(msg) {
			return fmt.Errorf("FETCH: %q", l)
		}
		if _, err := c.r.Discard(len(msg)); err != nil {
			return err
		}
		return c.imapDone("f1", "FETCH")
	case "pop3":
		if _, err := c.pop3Command("RETR 1"); err != nil {
			return err
		}
		return skipDotTerminated(c.r)
	case "smtp":
		if err := c.smtpCommand("MAIL FROM:<bulk@bench.local>", 250); err != nil {
			return err
		}
		if err := c.smtpCommand("RCPT TO:<rcpt@bench.local>", 250); err != nil {
			return err
		}
		if err := c.smtpCommand("DATA", 354); err != nil {
			return err
		}
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if err := c.send("."); err != nil {
			return err
		}
		return c.smtpReply(250)
	}
	return fmt.Errorf("unknown protocol %q", proto)
}
