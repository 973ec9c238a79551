package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// load is what one timed run of sessions gave.
type load struct {
	sessions, errors int
	firstErr         error
	elapsed          time.Duration
	lat              []time.Duration // sorted
}

func (l *load) perSecond() float64 { return float64(l.sessions) / l.elapsed.Seconds() }

// percentile returns the p-th percentile (0 < p < 100) of the latencies,
// in milliseconds.
func (l *load) percentile(p float64) float64 {
	if len(l.lat) == 0 {
		return 0
	}
	i := min(int(float64(len(l.lat))*p/100), len(l.lat)-1)
	return float64(l.lat[i]) / float64(time.Millisecond)
}

// maxErrors stops a run that only fails.
const maxErrors = 1000

// runLoad runs session from conc clients at once, each starting a new one
// as soon as its last ends, until dur has passed or maxSessions have
// started: a bounded loop in both count and time.
func runLoad(ctx context.Context, conc int, dur time.Duration, maxSessions int, session func(ctx context.Context, i int) error) *load {
	ctx, cancel := context.WithTimeout(ctx, dur+sessionTimeout)
	defer cancel()
	var (
		next   atomic.Int64
		errs   atomic.Int64
		mu     sync.Mutex
		l      = &load{}
		wg     sync.WaitGroup
		start  = time.Now()
		finish = start.Add(dur)
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 256)
			var failed int
			var first error
			for time.Now().Before(finish) && ctx.Err() == nil && errs.Load() < maxErrors {
				i := int(next.Add(1))
				if i > maxSessions {
					break
				}
				t := time.Now()
				if err := session(ctx, i); err != nil {
					failed++
					if first == nil {
						first = err
					}
					if errs.Add(1) >= maxErrors {
						cancel()
					}
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			l.lat = append(l.lat, lat...)
			l.errors += failed
			if l.firstErr == nil {
				l.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	l.elapsed = time.Since(start)
	l.sessions = len(l.lat)
	slices.Sort(l.lat)
	return l
}

// maxLoginSessions bounds one run of scenario 1, whatever its duration.
const maxLoginSessions = 1_000_000

// eachTurn runs turn for every contender in each round, the first of
// each round moving on by one so that none always goes first. A
// contender that is not there gets its reason noted in row instead.
func (h *harness) eachTurn(ctx context.Context, contenders []*contender, row *row, turn func(round int, c *contender)) {
	for round := range h.opts.rounds {
		for k := range contenders {
			c := contenders[(k+round)%len(contenders)]
			switch {
			case ctx.Err() != nil:
				return
			case c.down != "":
				row.fig(c.name).Note = c.down
			default:
				turn(round, c)
			}
		}
	}
}

// timedLoad runs sessions from conc clients for a run's duration on c and
// adds the rate (metric), p50, p99 and the proxy's CPU per session (per)
// to the rows of the case.
func (h *harness) timedLoad(ctx context.Context, scenario, cas, metric, per string, c *contender, round, conc int, session func(ctx context.Context, i int) error) *load {
	rate := h.res.row(scenario, cas, metric, "1/s", true)
	p50 := h.res.row(scenario, cas, "p50", "ms", false)
	p99 := h.res.row(scenario, cas, "p99", "ms", false)
	cpu := h.res.row(scenario, cas, "proxy CPU/"+per, "µs", false)
	w := h.begin(c)
	l := runLoad(ctx, conc, h.opts.duration, maxLoginSessions, session)
	proxyCPU := h.end(w, c, scenario, cas)
	h.logf("%s %s %s round %d: %d sessions, %.0f/s, p50 %.2f ms, p99 %.2f ms, %d errors",
		scenario, cas, c.name, round+1, l.sessions, l.perSecond(), l.percentile(50), l.percentile(99), l.errors)
	if l.errors > 0 {
		h.res.note("%s %s, %s, round %d: %d sessions failed, the first: %v", scenario, cas, c.name, round+1, l.errors, l.firstErr)
		rate.fig(c.name).Note = "errors"
	}
	if l.sessions == 0 {
		return l
	}
	rate.fig(c.name).add(l.perSecond())
	p50.fig(c.name).add(l.percentile(50))
	p99.fig(c.name).add(l.percentile(99))
	if c.proc != nil {
		cpu.fig(c.name).add(float64(proxyCPU) / float64(time.Microsecond) / float64(l.sessions))
	}
	return l
}

// loginScenario runs scenario 1: for each protocol and concurrency,
// rounds in which the contenders take turns.
func (h *harness) loginScenario(ctx context.Context, contenders []*contender) {
	// A warm-up, not counted: the first connections, the heaps grown.
	for _, proto := range h.opts.protocols {
		for _, c := range contenders {
			if c.down == "" {
				runLoad(ctx, 16, h.opts.duration/5, maxLoginSessions, func(ctx context.Context, i int) error {
					return loginSession(ctx, h.src, c.addrs[proto], proto, i, nil)
				})
			}
		}
	}
	for _, proto := range h.opts.protocols {
		for _, conc := range h.opts.concurrency {
			cas := fmt.Sprintf("%s c=%d", proto, conc)
			rate := h.res.row("login", cas, "sessions/s", "1/s", true)
			h.eachTurn(ctx, contenders, rate, func(round int, c *contender) {
				h.timedLoad(ctx, "login", cas, "sessions/s", "session", c, round, conc, func(ctx context.Context, i int) error {
					return loginSession(ctx, h.src, c.addrs[proto], proto, i, nil)
				})
			})
		}
	}
}
