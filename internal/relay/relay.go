// Package relay moves the bytes of a proxied session between the client
// and the backend once the backend login is done: zero-copy (splice) between
// two TCP sockets, through a pooled buffer otherwise, with the idle timeout
// of proxy_timeout.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrIdle is returned by [Run] when no byte has moved in either direction
// for the idle timeout (proxy_timeout).
var ErrIdle = errors.New("mail: proxy_timeout: no data in either direction")

// defaultBuffer is the copy buffer when Run is given none.
const defaultBuffer = 16 << 10

// Stats counts the bytes [Run] moved each way, pending bytes
// included.
type Stats struct {
	ToBackend int64 // from the client to the backend
	ToClient  int64 // from the backend to the client
}

// Run copies bytes both ways between client and backend until both
// directions have ended, either side fails, ctx ends, or no byte has moved
// in either direction for idle (proxy_timeout; zero or negative means no
// limit). clientPending is sent to the backend first (bytes the client
// pipelined before proxying started), backendPending to the client first.
// bufSize is the copy buffer for the non-zero-copy path (proxy_buffer);
// zero or negative means 16 KiB.
//
// When both connections are *net.TCPConn the bytes are copied with
// io.Copy, which on Linux moves them with splice(2) without copying them
// through user space. Any other connection (*tls.Conn, a wrapper) is
// copied through a buffer of bufSize per direction.
//
// When one direction reaches the end of its input, Run half-closes its
// destination (CloseWrite) and lets the other direction go on; a
// destination that cannot be half-closed ends the session, as nginx does.
// An error in either direction closes both connections at once.
//
// Run owns both connections: it clears their deadlines, closes them
// before returning, and has stopped every goroutine it started by then.
// It reports the bytes moved each way and why it ended: nil when both
// directions ended normally, ErrIdle, ctx's error, or the first copy error.
func Run(ctx context.Context, client, backend net.Conn, clientPending, backendPending []byte, idle time.Duration, bufSize int) (Stats, error) {
	if bufSize <= 0 {
		bufSize = defaultBuffer
	}
	// The dialogue before proxying set deadlines; from now on the idle
	// watchdog bounds the session instead.
	client.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})

	path, kernelBytes := relayPath(client, backend)
	r := &relay{path: path, bufSize: bufSize, ends: make(chan copyResult, 2)}
	activity := r.moves.Load
	if kernelBytes != nil {
		// splice moves bytes without our seeing them: the kernel's counters
		// of the two sockets tell instead.
		activity = func() uint64 { return r.moves.Load() + kernelBytes() }
	}
	go r.copy(true, backend, client, clientPending)
	go r.copy(false, client, backend, backendPending)

	var (
		stats    Stats
		reason   error
		stopped  bool
		done     = ctx.Done()
		tick     <-chan time.Time
		last     = activity()
		lastMove = time.Now()
	)
	if idle > 0 {
		t := time.NewTicker(min(max(idle/4, 5*time.Millisecond), 30*time.Second))
		defer t.Stop()
		tick = t.C
	}
	stop := func(err error) {
		if !stopped {
			stopped, reason = true, err
			done, tick = nil, nil
			client.Close()
			backend.Close()
		}
	}
	for running := 2; running > 0; {
		select {
		case e := <-r.ends:
			running--
			if e.toBackend {
				stats.ToBackend = e.n
			} else {
				stats.ToClient = e.n
			}
			switch {
			case e.err != nil:
				from, to := "backend", "client"
				if e.toBackend {
					from, to = to, from
				}
				stop(fmt.Errorf("mail: relay %s to %s: %w", from, to, e.err))
			case !e.halfClosed:
				stop(nil)
			}
		case <-done:
			stop(ctx.Err())
		case now := <-tick:
			if n := activity(); n != last {
				last, lastMove = n, now
			} else if now.Sub(lastMove) >= idle {
				stop(ErrIdle)
			}
		}
	}
	stop(nil)
	return stats, reason
}

// relay is the state shared by the two directions of a Run.
type relay struct {
	path    copyPath
	bufSize int
	moves   atomic.Uint64 // bumped by every read and write Run makes itself
	ends    chan copyResult
}

// copyResult is how one direction ended.
type copyResult struct {
	toBackend  bool
	n          int64 // bytes written to the destination
	err        error // nil at the end of the source's input
	halfClosed bool  // the destination was half-closed after the end of input
}

// copy moves pending and then everything src sends to dst, half-closes dst
// at the end of src's input, and reports on r.ends.
func (r *relay) copy(toBackend bool, dst, src net.Conn, pending []byte) {
	e := copyResult{toBackend: toBackend}
	e.n, e.err = r.write(dst, pending)
	if e.err == nil {
		var n int64
		if r.path == pathZeroCopy {
			// The concrete types go to io.Copy, so that
			// (*net.TCPConn).ReadFrom can splice.
			n, e.err = io.Copy(dst.(*net.TCPConn), src.(*net.TCPConn))
		} else {
			n, e.err = r.copyBuffered(dst, src)
		}
		e.n += n
	}
	if e.err == nil {
		cw, ok := dst.(interface{ CloseWrite() error })
		e.halfClosed = ok && cw.CloseWrite() == nil
	}
	r.ends <- e
}

// write sends b to dst and counts it as activity.
func (r *relay) write(dst net.Conn, b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := dst.Write(b)
	r.moves.Add(1)
	return int64(n), err
}

// copyBuffered copies src to dst through a pooled buffer until the end of
// src's input, counting every read and write as activity.
func (r *relay) copyBuffered(dst, src net.Conn) (int64, error) {
	pool := bufferPool(r.bufSize)
	buf := pool.Get().(*[]byte)
	defer pool.Put(buf)
	var written int64
	for {
		nr, rerr := src.Read(*buf)
		if nr > 0 {
			r.moves.Add(1)
			nw, werr := r.write(dst, (*buf)[:nr])
			written += nw
			if werr != nil {
				return written, werr
			}
			if int(nw) != nr {
				return written, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

// bufferPools holds a *sync.Pool of *[]byte per buffer size. The sizes
// come from the configuration, so there are few of them.
var bufferPools sync.Map

func bufferPool(size int) *sync.Pool {
	if p, ok := bufferPools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := bufferPools.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}})
	return p.(*sync.Pool)
}

// copyPath is how Run copies bytes.
type copyPath int

const (
	pathBuffered copyPath = iota // through a user-space buffer
	pathZeroCopy                 // io.Copy between *net.TCPConn: splice on Linux
)

func (p copyPath) String() string {
	if p == pathZeroCopy {
		return "zero-copy"
	}
	return "buffered"
}

// relayPath chooses how to copy between client and backend. On the
// zero-copy path it also returns the function that reads the kernel's byte
// counters of both sockets, which the idle watchdog watches.
func relayPath(client, backend net.Conn) (copyPath, func() uint64) {
	c, ok1 := client.(*net.TCPConn)
	b, ok2 := backend.(*net.TCPConn)
	if !ok1 || !ok2 {
		return pathBuffered, nil
	}
	if counter := kernelBytes(c, b); counter != nil {
		return pathZeroCopy, counter
	}
	return pathBuffered, nil
}
