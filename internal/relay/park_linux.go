package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A parked session relays between two TCP sockets and holds no goroutine
// while no byte is ready: the poller watches both sockets, and each
// direction runs in a goroutine of its own only from the moment its source
// is readable until it would block again. Then the direction re-arms its
// source in the poller and its goroutine ends.
type parked struct {
	id    uint64
	dirs  [2]direction // toBackend, toClient
	idle  time.Duration
	done  func(Stats, error)
	unreg func() bool // stops ctx's AfterFunc

	// lastMove is when a byte last moved, on the poller's clock.
	lastMove atomic.Int64

	// The poller's, under its lock: when the idle check is due, and the
	// session's place in the poller's heap (-1 when not in it).
	due     int64
	heapIdx int

	mu      sync.Mutex
	running int   // directions running in a goroutine
	stopped bool  // stop was called
	closed  bool  // both connections are closed
	why     error // stop's reason
}

// direction is one way of a parked session.
type direction struct {
	toBackend bool
	src, dst  net.Conn
	srcRC     syscall.RawConn // src's socket, which the poller watches
	dstRC     syscall.RawConn // dst's socket when bytes may be spliced to it
	tlsSrc    *tls.Conn       // src when it is TLS: read through it
	pending   []byte          // sent before anything read from src
	written   atomic.Int64
	inPoller  bool // src is in the poller's set (under the session's lock)
}

const (
	toBackend = 0
	toClient  = 1
)

// startParked registers both sockets of s with the poller and starts both
// directions, which send what is pending and then move what their source
// has until it would block. s.Backend is a *net.TCPConn, s.Client one too
// or a *tls.Conn over one (see relayPath).
func startParked(ctx context.Context, s Session, done func(Stats, error)) {
	ps := &parked{idle: s.Idle, done: done, heapIdx: -1}
	ps.dirs[toBackend] = direction{toBackend: true, src: s.Client, dst: s.Backend, pending: s.ClientPending}
	ps.dirs[toClient] = direction{src: s.Backend, dst: s.Client, pending: s.BackendPending}
	if err := ps.rawConns(); err != nil {
		ps.stop(err)
		return
	}
	if err := thePoller.init(); err != nil {
		ps.stop(err)
		return
	}
	ps.moved()
	ps.running = 2
	ps.unreg = context.AfterFunc(ctx, func() { ps.stop(ctx.Err()) })
	thePoller.add(ps)
	go ps.serve(toBackend, false)
	go ps.serve(toClient, false)
}

// rawConns takes the sockets' raw connections.
func (ps *parked) rawConns() error {
	for i := range ps.dirs {
		d := &ps.dirs[i]
		src := d.src
		if c, ok := src.(*tls.Conn); ok {
			d.tlsSrc, src = c, c.NetConn()
		}
		var err error
		if d.srcRC, err = src.(*net.TCPConn).SyscallConn(); err != nil {
			return err
		}
		if dst, ok := d.dst.(*net.TCPConn); ok && d.tlsSrc == nil {
			if d.dstRC, err = dst.SyscallConn(); err != nil {
				return err
			}
		}
	}
	return nil
}

// moved records that bytes moved now.
func (ps *parked) moved() { ps.lastMove.Store(thePoller.now()) }

// serve runs direction i until its source would block, ends or fails,
// then parks it, ends it or stops the session. The caller has counted it
// as running. woken says the poller found the source readable.
func (ps *parked) serve(i int, woken bool) {
	d := &ps.dirs[i]
	var eof bool
	var err error
	if d.tlsSrc != nil {
		eof, err = ps.moveTLS(d, woken)
	} else {
		eof, err = ps.move(d, woken)
	}
	switch {
	case err != nil:
		ps.stop(directionError(d.toBackend, err))
		ps.exit()
	case !eof:
		ps.park(i)
	case d.toBackend && closeWrite(d.dst):
		ps.exit() // the backend may still answer
	default:
		ps.stop(nil)
		ps.exit()
	}
}

// sendPending sends d's pending bytes, once.
func (ps *parked) sendPending(d *direction) error {
	if len(d.pending) == 0 {
		return nil
	}
	n, err := d.dst.Write(d.pending)
	d.written.Add(int64(n))
	ps.moved()
	d.pending = nil
	return err
}

// move sends d's pending bytes, then, when the poller found the source
// readable (woken), what it has ready, until the source would block (eof
// false) or its input ends (eof true). A read that does not fill the
// buffer is taken to have drained the source: the direction parks
// without reading again, since the poller reports at once input that
// came in the meantime (it is level-triggered). So a command or a reply
// costs one read and one write, and the session's start no read at all.
func (ps *parked) move(d *direction, woken bool) (eof bool, err error) {
	if err := ps.sendPending(d); err != nil || !woken {
		return false, err
	}
	for {
		n, full, err := burst(d.dst, d.srcRC)
		switch {
		case err == syscall.EAGAIN:
			return false, nil
		case n > 0:
			d.written.Add(int64(n))
			ps.moved()
		}
		switch {
		case err != nil:
			return false, err
		case n == 0:
			return true, nil
		case !full:
			return false, nil
		case d.dstRC == nil:
			continue // to a TLS client: no splice
		}
		p, err := getPipe()
		if err != nil {
			continue // no pipe (descriptors run out): bursts go on
		}
		m, eof, err := pump(d.dstRC, d.srcRC, p, ps.moved)
		d.written.Add(m)
		p.free(err == nil)
		if err != nil || eof {
			return eof, err
		}
	}
}

// moveTLS is move for a TLS source: it reads records through the
// *tls.Conn and writes their bytes to dst. Its first read after the
// poller found the socket readable waits for a whole record; the next
// ones take only what the connection holds already, whole records read
// past the last one, with a read deadline in the past, and the first that
// would wait ends the burst. The TLS connection keeps such a timeout
// from becoming its permanent error.
func (ps *parked) moveTLS(d *direction, woken bool) (eof bool, err error) {
	if err := ps.sendPending(d); err != nil {
		return false, err
	}
	buf := burstBuffers.Get().(*[burstBuffer]byte)
	defer burstBuffers.Put(buf)
	for wait := woken; ; wait = false {
		if wait {
			d.tlsSrc.SetReadDeadline(time.Time{})
		} else {
			d.tlsSrc.SetReadDeadline(aLongTimeAgo)
		}
		n, err := d.tlsSrc.Read(buf[:])
		if n > 0 {
			ps.moved()
			w, werr := d.dst.Write(buf[:n])
			d.written.Add(int64(w))
			ps.moved()
			if werr != nil {
				return false, werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			return false, nil
		case err == io.EOF:
			return true, nil
		default:
			return false, err
		}
	}
}

// aLongTimeAgo is a read deadline that has passed: a read with it takes
// only what is buffered.
var aLongTimeAgo = time.Unix(1, 0)

// enter counts a direction the poller found ready as running, unless the
// session is stopped.
func (ps *parked) enter() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.stopped {
		return false
	}
	ps.running++
	return true
}

// park re-arms direction i's source in the poller and ends its goroutine.
// It holds the session's lock while it arms, so that the goroutine the
// poller starts for the next burst sees everything this one did.
func (ps *parked) park(i int) {
	ps.mu.Lock()
	var err error
	if !ps.stopped {
		err = thePoller.arm(ps, i)
		ps.dirs[i].inPoller = true
	}
	ps.mu.Unlock()
	if err != nil {
		ps.stop(directionError(ps.dirs[i].toBackend, err))
	}
	ps.exit()
}

// exit ends a direction's goroutine; the last one out of a stopped session
// finishes it.
func (ps *parked) exit() {
	ps.mu.Lock()
	ps.running--
	last := ps.running == 0 && ps.closed
	ps.mu.Unlock()
	if last {
		ps.finish()
	}
}

// stop ends the session, once: it records why and closes both
// connections, which ends any direction running.
func (ps *parked) stop(why error) {
	ps.mu.Lock()
	if ps.stopped {
		ps.mu.Unlock()
		return
	}
	ps.stopped, ps.why = true, why
	ps.mu.Unlock()

	thePoller.remove(ps)
	ps.dirs[toBackend].src.Close()
	ps.dirs[toBackend].dst.Close()

	ps.mu.Lock()
	ps.closed = true
	last := ps.running == 0
	ps.mu.Unlock()
	if last {
		ps.finish()
	}
}

// finish reports the session's end.
func (ps *parked) finish() {
	if ps.unreg != nil {
		ps.unreg()
	}
	ps.done(Stats{ToBackend: ps.dirs[toBackend].written.Load(), ToClient: ps.dirs[toClient].written.Load()}, ps.why)
}
