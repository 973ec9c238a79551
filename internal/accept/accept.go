// Package accept holds what an accept loop does after an error: retry
// unless the socket can accept no more, pause a little longer each time,
// and log at a bounded rate. A flood that exhausts the descriptors
// (EMFILE) must slow the proxy down, never stop it.
package accept

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Retryable reports whether an accept error is worth retrying: every
// error but a closed listener and those of a socket that can no longer
// accept (EBADF, EINVAL, ENOTSOCK, EOPNOTSUPP). Descriptors or memory
// running out (EMFILE, ENFILE, ENOBUFS, ENOMEM) and a client gone before
// its accept (ECONNABORTED) pass with time.
func Retryable(err error) bool {
	for _, permanent := range []error{net.ErrClosed, syscall.EBADF, syscall.EINVAL, syscall.ENOTSOCK, syscall.EOPNOTSUPP} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	return true
}

// Bounds of the pause between retries, as net/http has them.
const (
	firstPause = 5 * time.Millisecond
	maxPause   = time.Second
	logEvery   = time.Second // at most one log line a second per loop
)

// Retrier paces an accept loop's retries and logs them. The zero value is
// ready; a Retrier belongs to one loop.
type Retrier struct {
	pause time.Duration
	log   Throttle
}

// Failed records err and returns how long to pause before the next
// accept: from 5ms, doubling up to one second. It logs the error on log,
// naming the listener, at most once a second with the number of errors
// it did not log in between.
func (r *Retrier) Failed(log *slog.Logger, listener string, err error) time.Duration {
	r.pause = min(max(2*r.pause, firstPause), maxPause)
	if unlogged, ok := r.log.Allow(); ok {
		log.Error("accept failed; retrying", "listen", listener, "err", err, "pause", r.pause, "unlogged", unlogged)
	}
	return r.pause
}

// Accepted resets the pause after a successful accept.
func (r *Retrier) Accepted() { r.pause = 0 }

// Throttle bounds the log lines of an event that may come in floods: one
// a second. The zero value is ready; it is safe for concurrent use.
type Throttle struct {
	mu      sync.Mutex
	logged  time.Time
	skipped int // events not logged since the last line
}

// Allow reports whether the event may be logged now, and how many were
// not logged since the last one that was.
func (t *Throttle) Allow() (unlogged int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); now.Sub(t.logged) >= logEvery {
		unlogged, t.logged, t.skipped = t.skipped, now, 0
		return unlogged, true
	}
	t.skipped++
	return 0, false
}
