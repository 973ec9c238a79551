// Package relay moves the bytes of a proxied session between the client
// and the backend once the backend login is done: between two TCP sockets
// on Linux, parked in a readiness loop while idle and zero-copy (splice)
// for bulk; through a pooled buffer otherwise; with the idle timeout of
// proxy_timeout.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrIdle ends a session [Start] relays when no byte has moved in either direction
// for the idle timeout (proxy_timeout).
var ErrIdle = errors.New("mail: proxy_timeout: no data in either direction")

// defaultBuffer is the copy buffer when Run is given none.
const defaultBuffer = 16 << 10

// Stats counts the bytes [Start] moved each way, pending bytes
// included.
type Stats struct {
	ToBackend int64 // from the client to the backend
	ToClient  int64 // from the backend to the client
}

// Session is a relayed session: the two connections, which Start owns
// from then on, and how to relay between them.
type Session struct {
	Client, Backend net.Conn
	// ClientPending is sent to the backend first: bytes the client
	// pipelined before proxying started. BackendPending is sent to the
	// client first.
	ClientPending, BackendPending []byte
	// Idle ends the session when no byte has moved in either direction
	// for that long (proxy_timeout); zero or negative means no limit.
	Idle time.Duration
	// Buffer is the copy buffer of each direction on the buffered path
	// (proxy_buffer); zero or negative means 16 KiB.
	Buffer int
}

// Start relays s in the background until both directions have ended,
// either side fails, ctx ends, or s.Idle passes without a byte moved. It
// returns at once; done is called once, when the session is over, both
// connections are closed and no goroutine of the session is left but the
// one calling done.
//
// Between two *net.TCPConn on Linux, an idle session holds no goroutine,
// no buffer and no pipe: both sockets wait in a readiness loop (epoll)
// shared by every session, and a direction runs only while its source
// has bytes, in a goroutine started for the burst. A burst is read into a
// pooled buffer and written out, two system calls for a command or a
// reply; a burst that fills the buffer is bulk, and its rest moves with
// splice(2) through a pooled pipe, without being copied through user
// space. The idle timeout comes from the same loop, without a timer per
// session.
//
// A TLS client over TCP is parked the same way: its direction reads
// records through the *tls.Conn while they come and parks when the socket
// has no more, keeping the connection's TLS state but no buffer of ours;
// the bytes to it go through the pooled buffer, as TLS must encrypt them.
//
// Any other pair (a wrapper, a pipe) is copied through a buffer of
// s.Buffer per direction, by one goroutine per direction, with a timer
// for the idle timeout.
//
// When the backend's input ends, the session ends, as nginx ends it: a
// client that keeps its connection open after the backend's last reply
// (BYE, 221) does not hold the session. When the client's input ends, the
// backend's connection is half-closed (CloseWrite) and the backend may
// still answer; a connection that cannot be half-closed ends the session.
// An error in either direction closes both connections at once.
//
// done gets the bytes moved each way, pending bytes included, and why the
// session ended: nil when both directions ended normally, ErrIdle, ctx's
// error, or the first copy error.
func Start(ctx context.Context, s Session, done func(Stats, error)) {
	if s.Buffer <= 0 {
		s.Buffer = defaultBuffer
	}
	// The dialogue before proxying set deadlines; from now on the idle
	// timeout bounds the session instead.
	s.Client.SetDeadline(time.Time{})
	s.Backend.SetDeadline(time.Time{})
	if relayPath(s.Client, s.Backend) != pathBuffered {
		startParked(ctx, s, done)
		return
	}
	go func() { done(runBuffered(ctx, s)) }()
}

// runBuffered relays s through a buffer per direction: the caller carries
// one direction and a goroutine the other.
func runBuffered(ctx context.Context, s Session) (Stats, error) {
	r := &relay{client: s.Client, backend: s.Backend, bufSize: s.Buffer, idle: s.Idle, start: time.Now()}
	if s.Idle > 0 {
		r.timer = time.AfterFunc(s.Idle, r.checkIdle)
		defer r.timer.Stop()
	}
	defer context.AfterFunc(ctx, func() { r.stop(ctx.Err()) })()

	up := make(chan int64, 1)
	go func() { up <- r.copy(true, s.Backend, s.Client, s.ClientPending) }()
	down := r.copy(false, s.Client, s.Backend, s.BackendPending)
	stats := Stats{ToBackend: <-up, ToClient: down}
	r.stop(nil)
	return stats, r.reason()
}

// relay is the state shared by the two directions of a buffered session.
type relay struct {
	client, backend net.Conn
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
// the client's input it half-closes the backend, or ends the session when
// it cannot; the end of the backend's input or an error ends the session.
// It returns the bytes written to dst.
func (r *relay) copy(toBackend bool, dst, src net.Conn, pending []byte) int64 {
	n, err := r.write(dst, pending)
	if err == nil {
		var m int64
		m, err = r.copyBuffered(dst, src)
		n += m
	}
	switch {
	case err != nil:
		r.stop(directionError(toBackend, err))
	case !toBackend || !closeWrite(dst):
		r.stop(nil)
	}
	return n
}

// directionError says in which direction err happened.
func directionError(toBackend bool, err error) error {
	if toBackend {
		return fmt.Errorf("mail: relay client to backend: %w", err)
	}
	return fmt.Errorf("mail: relay backend to client: %w", err)
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

// copyPath is how Start relays a session.
type copyPath int

const (
	pathBuffered  copyPath = iota // a goroutine and a buffer per direction
	pathZeroCopy                  // parked in epoll; splice between two *net.TCPConn (Linux)
	pathParkedTLS                 // parked in epoll; a TLS client over TCP, a TCP backend (Linux)
)

func (p copyPath) String() string {
	switch p {
	case pathZeroCopy:
		return "zero-copy"
	case pathParkedTLS:
		return "parked TLS"
	}
	return "buffered"
}

// relayPath chooses how to relay between client and backend: parked in
// the readiness loop when the poller can watch both sockets, that is when
// the backend is a *net.TCPConn and the client one too, or TLS directly
// over one.
func relayPath(client, backend net.Conn) copyPath {
	if _, ok := backend.(*net.TCPConn); !ok || !canPark {
		return pathBuffered
	}
	switch c := client.(type) {
	case *net.TCPConn:
		return pathZeroCopy
	case *tls.Conn:
		if _, ok := c.NetConn().(*net.TCPConn); ok {
			return pathParkedTLS
		}
	}
	return pathBuffered
}
