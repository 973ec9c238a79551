package auth

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on the connections kept to an auth service.
const (
	maxIdleConns    = 256              // idle connections kept
	idleConnTimeout = 90 * time.Second // how long one stays idle before it is closed
)

// pool is the client side of an auth service: HTTP/1.1 over connections
// kept open between requests, made for the one request auth_http sends.
// Idle connections are a stack, the most recently used on top, so that
// the ones a quiet period leaves at the bottom expire.
//
// A request needs no goroutine of its own: it is written in one write and
// its response read in the caller's goroutine, under a deadline.
type pool struct {
	network, addr string
	maxIdle       int
	idleTimeout   time.Duration
	closed        atomic.Bool

	mu    sync.Mutex
	idle  []*conn
	sweep *time.Timer // closes expired idle connections
	armed bool        // sweep is set
}

// conn is a connection to the service.
type conn struct {
	net.Conn
	deadline time.Time // the one set on it; zero for none
	since    time.Time // when it went idle
}

func newPool(network, addr string) *pool {
	return &pool{network: network, addr: addr, maxIdle: maxIdleConns, idleTimeout: idleConnTimeout}
}

// get returns the most recently used idle connection, nil when there is
// none.
func (p *pool) get() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	top := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	if time.Since(top.since) >= p.idleTimeout {
		// The sweep is late; the ones below are older still.
		p.closeIdleLocked()
		top.Close()
		return nil
	}
	return top
}

// put keeps c for another request, or closes it when the pool is full or
// closed.
func (p *pool) put(c *conn) {
	p.mu.Lock()
	if p.closed.Load() || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	c.since = time.Now()
	p.idle = append(p.idle, c)
	if !p.armed {
		p.armed = true
		if p.sweep == nil {
			p.sweep = time.AfterFunc(p.idleTimeout, p.expire)
		} else {
			p.sweep.Reset(p.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// expire closes the connections idle for idleTimeout, and sets the sweep
// again for the oldest of the others.
func (p *pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].since) >= p.idleTimeout {
		p.idle[n].Close()
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle) : len(p.idle)+n])
	p.armed = len(p.idle) > 0
	if p.armed {
		p.sweep.Reset(p.idle[0].since.Add(p.idleTimeout).Sub(now))
	}
}

// close closes the idle connections; those in use are closed when their
// request ends.
func (p *pool) close() {
	p.closed.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeIdleLocked()
	if p.sweep != nil {
		p.sweep.Stop()
		p.armed = false
	}
}

func (p *pool) closeIdleLocked() {
	for i := range p.idle {
		p.idle[i].Close()
		p.idle[i] = nil
	}
	p.idle = p.idle[:0]
}

// call is the memory of one request: its bytes, and the reader of its
// response. Calls are pooled, so that a request allocates little.
type call struct {
	req []byte
	reader
	conn  net.Conn // the connection of the request running
	abort func()   // x.stop, made once: a request allocates no closure
	// slack is how much earlier than the request's deadline one already
	// set on a kept connection may be, so that a busy connection is not
	// set again for every request.
	slack time.Duration
}

// Pooled calls that grew past this are dropped.
const maxPooledRequest = 64 << 10

var calls = sync.Pool{New: func() any {
	x := &call{req: make([]byte, 0, 1<<10), reader: reader{br: bufio.NewReaderSize(nil, maxResponseHeader)}}
	x.abort = x.stop
	return x
}}

func getCall() *call { return calls.Get().(*call) }

// putCall gives x back for another request, unless a context's end may
// still be stopping its connection.
func putCall(x *call) {
	if x.conn != nil {
		return
	}
	x.br.Reset(nil)
	x.resp = response{}
	if cap(x.req) <= maxPooledRequest && cap(x.fold) <= maxResponseHeader {
		calls.Put(x)
	}
}

// roundTrip sends x.req and reads the response head into x.resp, skipping
// its body, by deadline or until ctx ends. keepAlive takes the connection
// from the pool and gives it back after. A kept connection the service
// closed while it was idle (an error before any byte of the response, or
// a 408 Request Timeout, which servers send to an idle connection) is no
// answer: the request goes once more, on a new connection.
func (p *pool) roundTrip(ctx context.Context, x *call, deadline time.Time, keepAlive bool) error {
	var c *conn
	if keepAlive {
		c = p.get()
	}
	reused := c != nil
	for {
		if c == nil {
			d := net.Dialer{Deadline: deadline}
			nc, err := d.DialContext(ctx, p.network, p.addr)
			if err != nil {
				return err
			}
			c = &conn{Conn: nc}
		}
		keep, err := x.do(ctx, c, deadline)
		if err == nil && reused && x.resp.code == 408 {
			err, keep = errServerClosedIdle, false
		}
		if err == nil && keep && keepAlive {
			p.put(c)
		} else {
			c.Close()
		}
		if err == nil || !reused || ctx.Err() != nil || isTimeout(err) || x.began() && err != errServerClosedIdle {
			return err
		}
		c, reused = nil, false
	}
}

var errServerClosedIdle = errors.New("auth http server closed an idle connection")

// do runs the request on c and reports whether c can carry another.
func (x *call) do(ctx context.Context, c *conn, deadline time.Time) (keep bool, err error) {
	x.n = 0
	x.br.Reset(c)
	if err := x.setDeadline(ctx, c, deadline); err != nil {
		return false, err
	}
	if ctx.Done() != nil {
		x.conn = c.Conn
		stop := context.AfterFunc(ctx, x.abort)
		defer func() {
			if stop() {
				x.conn = nil
			} else {
				keep = false // the deadline was cut short, maybe still is being
			}
		}()
	}
	if _, err := c.Write(x.req); err != nil {
		return false, err
	}
	body, err := x.readResponse()
	if err != nil {
		return false, err
	}
	return x.skipBody(body), nil
}

// setDeadline makes c's deadline one that ends the request by deadline,
// unless the one c has will do: none at all when deadline is ctx's, whose
// end stops the request; one up to x.slack earlier otherwise.
func (x *call) setDeadline(ctx context.Context, c *conn, deadline time.Time) error {
	if d, ok := ctx.Deadline(); ok && d.Equal(deadline) && ctx.Done() != nil {
		if c.deadline.IsZero() || !c.deadline.Before(deadline) {
			return nil
		}
	} else if !c.deadline.After(deadline) && deadline.Sub(c.deadline) <= x.slack {
		return nil
	}
	c.deadline = deadline
	return c.SetDeadline(deadline)
}

// stop ends the running request at once, when its context ends.
func (x *call) stop() { x.conn.SetDeadline(aLongTimeAgo) }

// aLongTimeAgo is a deadline in the past, to stop a read at once.
var aLongTimeAgo = time.Unix(1, 0)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
