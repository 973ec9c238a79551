// Package accept holds what an accept loop does after an error: retry
// unless the socket can accept no more, pause a little longer each time,
// and log at a bounded rate. A flood that exhausts the descriptors
// (EMFILE) must slow the proxy down, never stop it.
package accept

import (
	"errors"
	"log/slog"
	"net"
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
	pause   time.Duration
	logged  time.Time
	skipped int // errors not logged since the last line
}

// Failed records err and returns how long to pause before the next
// accept: from 5ms, doubling up to one second. It logs the error on log,
// naming the listener, at most once a second with the number of errors
// it did not log in between.
func (r *Retrier) Failed(log *slog.Logger, listener string, err error) time.Duration {
	r.pause = min(max(2*r.pause, firstPause), maxPause)
	if now := time.Now(); now.Sub(r.logged) >= logEvery {
		log.Error("accept failed; retrying", "listen", listener, "err", err, "pause", r.pause, "unlogged", r.skipped)
		r.logged, r.skipped = now, 0
	} else {
		r.skipped++
	}
	return r.pause
}

// Accepted resets the pause after a successful accept.
func (r *Retrier) Accepted() { r.pause = 0 }
