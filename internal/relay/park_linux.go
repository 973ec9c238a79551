package relay

import (
	"context"
	"net"
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
	ended   int   // directions at the end of their input
	stopped bool  // stop was called
	closed  bool  // both connections are closed
	why     error // stop's reason
	// armed holds the directions parked, waiting for their source's
	// next event; under mu.
	armed [2]bool
}

// direction is one way of a parked session.
type direction struct {
	toBackend    bool
	src, dst     *net.TCPConn
	srcRC, dstRC syscall.RawConn
	pending      []byte // sent before anything read from src
	written      atomic.Int64
}

const (
	toBackend = 0
	toClient  = 1
)

// startParked registers both sockets of s with the poller and starts both
// directions, which send what is pending and then move what their source
// has until it would block.
func startParked(ctx context.Context, s Session, done func(Stats, error)) {
	client, backend := s.Client.(*net.TCPConn), s.Backend.(*net.TCPConn)
	ps := &parked{idle: s.Idle, done: done, heapIdx: -1}
	ps.dirs[toBackend] = direction{toBackend: true, src: client, dst: backend, pending: s.ClientPending}
	ps.dirs[toClient] = direction{src: backend, dst: client, pending: s.BackendPending}
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
	if err := thePoller.add(ps); err != nil {
		ps.stop(err) // the directions then fail at once
	}
	go ps.serve(toBackend)
	go ps.serve(toClient)
}

// rawConns takes the sockets' raw connections.
func (ps *parked) rawConns() error {
	for i := range ps.dirs {
		d := &ps.dirs[i]
		var err error
		if d.srcRC, err = d.src.SyscallConn(); err != nil {
			return err
		}
		if d.dstRC, err = d.dst.SyscallConn(); err != nil {
			return err
		}
	}
	return nil
}

// moved records that bytes moved now.
func (ps *parked) moved() { ps.lastMove.Store(thePoller.now()) }

// serve runs direction i until its source would block, ends or fails,
// then parks it, ends it or stops the session. The caller has counted it
// as running.
func (ps *parked) serve(i int) {
	d := &ps.dirs[i]
	eof, err := ps.move(d)
	switch {
	case err != nil:
		ps.stop(directionError(d.toBackend, err))
		ps.exit()
	case !eof:
		ps.park(i)
	case !closeWrite(d.dst):
		ps.stop(nil)
		ps.exit()
	default:
		ps.end()
	}
}

// move sends d's pending bytes, then what its source has ready, until the
// source would block (eof false) or its input ends (eof true).
func (ps *parked) move(d *direction) (eof bool, err error) {
	if len(d.pending) > 0 {
		n, err := d.dst.Write(d.pending)
		d.written.Add(int64(n))
		ps.moved()
		d.pending = nil
		if err != nil {
			return false, err
		}
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
			continue
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

// enter counts direction i, which the poller found ready, as running,
// unless the session is stopped or the direction is not parked: epoll
// reports a hang-up or an error even on a source not armed yet, while its
// direction still runs its first burst. Such an event is dropped; the
// source stays disabled until armed, and is then reported again.
func (ps *parked) enter(i int) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.stopped || !ps.armed[i] {
		return false
	}
	ps.armed[i] = false
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
		ps.armed[i] = true
		err = thePoller.arm(ps, i)
	}
	ps.mu.Unlock()
	if err != nil {
		ps.stop(directionError(ps.dirs[i].toBackend, err))
	}
	ps.exit()
}

// end records that a direction reached the end of its input; the session
// stops when both have.
func (ps *parked) end() {
	ps.mu.Lock()
	ps.ended++
	both := ps.ended == 2
	ps.mu.Unlock()
	if both {
		ps.stop(nil)
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
