package relay

import (
	"container/heap"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller is the readiness loop of every parked session: one epoll set
// holding the sockets of the parked directions, each armed for one event
// (EPOLLONESHOT), and a heap of the sessions' idle checks.
//
// The loop needs no thread of its own: the epoll descriptor is itself
// watched by Go's network poller, so the loop's goroutine waits as a
// socket read waits, and the next idle check is that read's deadline. The
// goroutine runs only while sessions are parked.
type poller struct {
	once  sync.Once
	err   error
	epfd  int
	epoll *os.File // epfd, watched by Go's poller
	rc    syscall.RawConn
	epoch time.Time // the clock's zero

	mu       sync.Mutex
	sessions map[uint64]*parked
	lastID   uint64
	checks   idleHeap
	deadline int64 // the wait's deadline on the clock; 0: none
	looping  bool  // the loop's goroutine runs
}

// thePoller is the process's poller, opened with the first parked session.
var thePoller poller

// now is the poller's clock: monotonic time since its epoch.
func (p *poller) now() int64 { return int64(time.Since(p.epoch)) }

// init opens the epoll set, once.
func (p *poller) init() error {
	p.once.Do(func() {
		p.epoch = time.Now()
		p.sessions = make(map[uint64]*parked)
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			p.err = fmt.Errorf("relay: epoll: %w", err)
			return
		}
		unix.SetNonblock(fd, true) // so that Go's poller watches it
		p.epfd = fd
		p.epoll = os.NewFile(uintptr(fd), "relay-epoll")
		p.rc, p.err = p.epoll.SyscallConn()
	})
	return p.err
}

// add registers both sockets of ps, disarmed, and schedules its idle
// check. A session stopped in the meantime is left out.
func (p *poller) add(ps *parked) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps.mu.Lock()
	stopped := ps.stopped
	ps.mu.Unlock()
	if stopped {
		return nil
	}
	p.lastID++
	ps.id = p.lastID
	for i := range ps.dirs {
		// Without an event bit the socket is in the set but reports
		// no input until arm asks for it; a hang-up or an error it
		// reports all the same (epoll always does), which enter drops.
		if err := p.ctl(unix.EPOLL_CTL_ADD, ps, i, unix.EPOLLONESHOT); err != nil {
			return err
		}
	}
	p.sessions[ps.id] = ps
	if ps.idle > 0 {
		ps.due = ps.lastMove.Load() + int64(ps.idle)
		heap.Push(&p.checks, ps)
		p.setDeadline()
	}
	if !p.looping {
		p.looping = true
		go p.loop()
	}
	return nil
}

// arm asks for one event when direction i's source is readable (or hung
// up, or failed). It is level-triggered: input that arrived since the
// direction last read is reported at once.
func (p *poller) arm(ps *parked, i int) error {
	return p.ctl(unix.EPOLL_CTL_MOD, ps, i, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLONESHOT)
}

// ctl applies an epoll operation to direction i's source. The event
// carries the session's number and the direction.
func (p *poller) ctl(op int, ps *parked, i int, events uint32) error {
	var ctlErr error
	err := ps.dirs[i].srcRC.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: events}
		setEventData(&ev, ps.id<<1|uint64(i))
		ctlErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return ctlErr
}

func setEventData(ev *unix.EpollEvent, data uint64) {
	ev.Fd, ev.Pad = int32(uint32(data)), int32(uint32(data>>32))
}

func eventData(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// remove forgets ps. Its sockets leave the epoll set when they are
// closed.
func (p *poller) remove(ps *parked) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions[ps.id] != ps {
		return
	}
	delete(p.sessions, ps.id)
	if ps.heapIdx >= 0 {
		heap.Remove(&p.checks, ps.heapIdx)
	}
	if len(p.sessions) == 0 {
		p.deadline = -1
		p.epoll.SetReadDeadline(time.Now()) // wakes the loop, which ends
	}
}

// loop waits for events and idle checks and acts on them until no
// session is parked.
func (p *poller) loop() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := p.wait(events)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			panic(fmt.Sprintf("relay: epoll_wait: %v", err)) // EBADF, EFAULT, EINVAL: a bug
		}
		p.dispatch(events[:n])
		if !p.expire() {
			return
		}
	}
}

// wait returns the events ready, waiting for some in Go's poller, or
// os.ErrDeadlineExceeded when an idle check is due.
func (p *poller) wait(events []unix.EpollEvent) (n int, err error) {
	var waitErr error
	err = p.rc.Read(func(fd uintptr) bool {
		n, waitErr = unix.EpollWait(int(fd), events, 0)
		if waitErr == unix.EINTR {
			n, waitErr = 0, nil
		}
		return n > 0 || waitErr != nil
	})
	if err == nil {
		err = waitErr
	}
	return max(n, 0), err
}

// dispatch starts a goroutine for each direction found ready.
func (p *poller) dispatch(events []unix.EpollEvent) {
	for i := range events {
		data := eventData(&events[i])
		p.mu.Lock()
		ps := p.sessions[data>>1]
		p.mu.Unlock()
		if ps != nil && ps.enter(int(data&1)) {
			go ps.serve(int(data & 1))
		}
	}
}

// expire stops the sessions idle for their timeout, schedules the next
// check of the others, and sets the wait's deadline to the first check
// due. It reports whether the loop goes on: false when no session is
// parked.
func (p *poller) expire() bool {
	var idle []*parked
	p.mu.Lock()
	now := p.now()
	for len(p.checks) > 0 && p.checks[0].due <= now {
		ps := p.checks[0]
		if quiet := now - ps.lastMove.Load(); quiet >= int64(ps.idle) {
			heap.Pop(&p.checks)
			idle = append(idle, ps)
			continue
		}
		ps.due = ps.lastMove.Load() + int64(ps.idle)
		heap.Fix(&p.checks, 0)
	}
	p.setDeadline()
	goOn := len(p.sessions) > 0
	if !goOn {
		p.looping = false
	}
	p.mu.Unlock()
	for _, ps := range idle {
		ps.stop(ErrIdle)
	}
	return goOn
}

// setDeadline makes the loop's wait end when the first idle check is
// due. The caller holds p.mu.
func (p *poller) setDeadline() {
	var due int64
	if len(p.checks) > 0 {
		due = p.checks[0].due
	}
	switch {
	case due == p.deadline:
	case due == 0:
		p.epoll.SetReadDeadline(time.Time{})
	default:
		p.epoll.SetReadDeadline(p.epoch.Add(time.Duration(due)))
	}
	p.deadline = due
}

// idleHeap orders parked sessions by when their idle check is due.
type idleHeap []*parked

func (h idleHeap) Len() int           { return len(h) }
func (h idleHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h idleHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *idleHeap) Push(x any) {
	ps := x.(*parked)
	ps.heapIdx = len(*h)
	*h = append(*h, ps)
}
func (h *idleHeap) Pop() any {
	old := *h
	ps := old[len(old)-1]
	old[len(old)-1] = nil
	ps.heapIdx = -1
	*h = old[:len(old)-1]
	return ps
}
