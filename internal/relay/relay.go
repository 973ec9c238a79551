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
// Between two *net.TCPConn on Linux the bytes move with splice(2), without
// being copied through user space, through a pipe taken from a pool while
// bytes are ready and given back when the source runs dry: an idle session
// holds its two sockets and no pipe. Any other connection (*tls.Conn, a
// wrapper) is copied through a buffer of bufSize per direction.
//
// A session costs one goroutine besides the caller's, which carries one
// direction: no watchdog. The idle timeout is a timer that looks at the
// time of the last byte moved when it fires, and ctx's end closes both
// connections through context.AfterFunc.
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
	// timer bounds the session instead.
	client.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})

	r := &relay{client: client, backend: backend, bufSize: bufSize, idle: idle, start: time.Now()}
	r.path = relayPath(client, backend)
	if idle > 0 {
		r.timer = time.AfterFunc(idle, r.checkIdle)
		defer r.timer.Stop()
	}
	defer context.AfterFunc(ctx, func() { r.stop(ctx.Err()) })()

	up := make(chan int64, 1)
	go func() { up <- r.copy(true, backend, client, clientPending) }()
	down := r.copy(false, client, backend, backendPending)
	stats := Stats{ToBackend: <-up, ToClient: down}
	r.stop(nil)
	return stats, r.reason()
}

// relay is the state shared by the two directions of a Run.
type relay struct {
	client, backend net.Conn
	path            copyPath
	bufSize         int
	idle            time.Duration
	timer           *time.Timer
	start           time.Time
	lastMove        atomic.Int64 // time since start of the last byte moved

	once sync.Once
	mu   sync.Mutex
	why  error // why the session was stopped, by stop's first call
}

// moved records that bytes moved now.
func (r *relay) moved() { r.lastMove.Store(int64(time.Since(r.start))) }

// checkIdle runs when the idle timer fires: it ends a session in which no
// byte moved for idle, and sets the timer again for one in which some did.
func (r *relay) checkIdle() {
	quiet := time.Since(r.start) - time.Duration(r.lastMove.Load())
	if quiet >= r.idle {
		r.stop(ErrIdle)
		return
	}
	r.timer.Reset(r.idle - quiet)
}

// stop ends the session, once: it records why and closes both
// connections, which ends both directions.
func (r *relay) stop(why error) {
	r.once.Do(func() {
		r.mu.Lock()
		r.why = why
		r.mu.Unlock()
		r.client.Close()
		r.backend.Close()
	})
}

func (r *relay) reason() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.why
}

// copy moves pending and then everything src sends to dst. At the end of
// src's input it half-closes dst, or ends the session when dst cannot be
// half-closed; an error ends the session. It returns the bytes written to
// dst.
func (r *relay) copy(toBackend bool, dst, src net.Conn, pending []byte) int64 {
	n, err := r.write(dst, pending)
	if err == nil {
		var m int64
		if r.path == pathZeroCopy {
			m, err = r.copySplice(dst.(*net.TCPConn), src.(*net.TCPConn))
		} else {
			m, err = r.copyBuffered(dst, src)
		}
		n += m
	}
	switch {
	case err != nil:
		from, to := "backend", "client"
		if toBackend {
			from, to = to, from
		}
		r.stop(fmt.Errorf("mail: relay %s to %s: %w", from, to, err))
	case !closeWrite(dst):
		r.stop(nil)
	}
	return n
}

// closeWrite ends dst's sending side and reports whether it could.
func closeWrite(dst net.Conn) bool {
	cw, ok := dst.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

// write sends b to dst and counts it as activity.
func (r *relay) write(dst net.Conn, b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := dst.Write(b)
	r.moved()
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
			r.moved()
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
	pathZeroCopy                 // splice between two *net.TCPConn (Linux)
)

func (p copyPath) String() string {
	if p == pathZeroCopy {
		return "zero-copy"
	}
	return "buffered"
}

// relayPath chooses how to copy between client and backend.
func relayPath(client, backend net.Conn) copyPath {
	_, ok1 := client.(*net.TCPConn)
	_, ok2 := backend.(*net.TCPConn)
	if ok1 && ok2 && canSplice {
		return pathZeroCopy
	}
	return pathBuffered
}
