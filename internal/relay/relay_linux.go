package relay

import (
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// canSplice: Linux has splice(2).
const canSplice = true

// maxChunk is what one splice moves at most: the size the pipes are given
// (as Go's own splice path gives them), so that a bulk transfer takes few
// system calls.
const maxChunk = 1 << 20

// copySplice moves src to dst until the end of src's input. Each burst is
// read into a small pooled buffer, taken only once src is readable, and
// written out: two system calls for a command or a reply. When a read
// fills the buffer the burst is bulk, and its rest moves with splice(2)
// through a pooled pipe, given back empty when src runs dry. An idle
// direction holds nothing but its sockets. When no pipe can be had
// (descriptors run out), the bulk goes through a buffer.
func (r *relay) copySplice(dst, src *net.TCPConn) (int64, error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	for {
		n, full, err := r.copyBurst(dst, srcRC)
		written += int64(n)
		if err != nil || n == 0 {
			return written, err // n == 0: the end of src's input
		}
		if !full {
			continue
		}
		p, err := getPipe()
		if err != nil {
			n, err := r.copyBuffered(dst, src)
			return written + n, err
		}
		m, eof, err := r.pump(dstRC, srcRC, p)
		written += m
		p.free(err == nil)
		if err != nil || eof {
			return written, err
		}
	}
}

// burstBuffer is the size of the buffer a burst is read into.
const burstBuffer = 16 << 10

var burstBuffers = sync.Pool{New: func() any { return new([burstBuffer]byte) }}

// copyBurst waits until src is readable, reads what it has (up to
// burstBuffer bytes) and writes it to dst. It returns the bytes moved,
// none at the end of src's input, and whether they filled the buffer.
func (r *relay) copyBurst(dst net.Conn, src syscall.RawConn) (n int, full bool, err error) {
	var buf *[burstBuffer]byte
	var readErr error
	err = src.Read(func(fd uintptr) bool {
		buf = burstBuffers.Get().(*[burstBuffer]byte)
		for {
			n, readErr = unix.Read(int(fd), buf[:])
			if readErr != unix.EINTR {
				break
			}
		}
		if readErr == unix.EAGAIN {
			burstBuffers.Put(buf) // nothing is held while waiting
			buf = nil
			return false
		}
		return true
	})
	if buf != nil {
		defer burstBuffers.Put(buf)
	}
	switch {
	case err != nil:
		return 0, false, err
	case readErr != nil:
		return 0, false, readErr
	case n <= 0:
		return 0, false, nil
	}
	r.moved()
	w, err := dst.Write(buf[:n])
	r.moved()
	return w, n == burstBuffer, err
}

// pump moves what src has ready into p and out to dst, chunk by chunk,
// until src would block (eof false) or its input ends (eof true). p is
// empty when pump returns no error.
func (r *relay) pump(dst, src syscall.RawConn, p *pipe) (written int64, eof bool, err error) {
	for {
		var n int
		var spliceErr error
		if err := src.Read(func(fd uintptr) bool {
			n, spliceErr = splice(int(fd), p.w, maxChunk)
			return true
		}); err != nil {
			return written, false, err
		}
		switch {
		case spliceErr == unix.EAGAIN:
			return written, false, nil
		case spliceErr != nil:
			return written, false, spliceErr
		case n == 0:
			return written, true, nil
		}
		r.moved()
		m, err := drain(dst, p.r, n)
		written += int64(m)
		if err != nil {
			return written, false, err
		}
		r.moved()
	}
}

// drain moves n bytes from the pipe's reading end to dst, waiting for dst
// to take them.
func drain(dst syscall.RawConn, pipeR, n int) (int, error) {
	done := 0
	for done < n {
		var m int
		var spliceErr error
		if err := dst.Write(func(fd uintptr) bool {
			m, spliceErr = splice(pipeR, int(fd), n-done)
			return spliceErr != unix.EAGAIN // else wait for the poller
		}); err != nil {
			return done, err
		}
		switch {
		case spliceErr != nil:
			return done, spliceErr
		case m == 0:
			return done, io.ErrNoProgress
		}
		done += m
	}
	return done, nil
}

// splice moves up to max bytes from in to out without blocking.
func splice(in, out, max int) (int, error) {
	for {
		n, err := unix.Splice(in, nil, out, nil, max, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err != unix.EINTR {
			return int(n), err
		}
	}
}

// pipe is a pipe that splice moves bytes through. Pipes are pooled and
// closed when the garbage collector drops them from the pool.
type pipe struct {
	r, w    int
	cleanup runtime.Cleanup
}

var pipes sync.Pool

// getPipe takes an empty pipe from the pool, or makes one.
func getPipe() (*pipe, error) {
	if p, ok := pipes.Get().(*pipe); ok {
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, maxChunk) // a smaller pipe works too
	p := &pipe{r: fds[0], w: fds[1]}
	p.cleanup = runtime.AddCleanup(p, closePipe, fds)
	return p, nil
}

// free gives an empty pipe back to the pool, and closes one that may hold
// bytes.
func (p *pipe) free(empty bool) {
	if empty {
		pipes.Put(p)
		return
	}
	p.cleanup.Stop()
	closePipe([2]int{p.r, p.w})
}

func closePipe(fds [2]int) {
	unix.Close(fds[0])
	unix.Close(fds[1])
}
