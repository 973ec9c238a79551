package relay

import (
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// canPark: Linux has epoll(7) and splice(2).
const canPark = true

// maxChunk is what one splice moves at most: the size the pipes are given
// (as Go's own splice path gives them), so that a bulk transfer takes few
// system calls.
const maxChunk = 1 << 20

// burstBuffer is the size of the buffer a burst is read into.
const burstBuffer = 16 << 10

var burstBuffers = sync.Pool{New: func() any { return new([burstBuffer]byte) }}

// burst reads what src has ready, up to burstBuffer bytes, without
// waiting, and writes it to dst, waiting for dst to take it. It returns
// the bytes moved, none at the end of src's input, and whether they
// filled the buffer; unix.EAGAIN when src has nothing ready.
func burst(dst net.Conn, src syscall.RawConn) (n int, full bool, err error) {
	buf := burstBuffers.Get().(*[burstBuffer]byte)
	defer burstBuffers.Put(buf)
	var readErr error
	if err := src.Read(func(fd uintptr) bool {
		n, readErr = readNoWait(int(fd), buf[:])
		return true
	}); err != nil {
		return 0, false, err
	}
	if readErr != nil {
		return 0, false, readErr
	}
	if n <= 0 {
		return 0, false, nil
	}
	w, err := dst.Write(buf[:n])
	return w, n == burstBuffer, err
}

// readNoWait reads from a non-blocking descriptor.
func readNoWait(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// pump moves what src has ready into p and out to dst, chunk by chunk,
// until src would block (eof false) or its input ends (eof true). p is
// empty when pump returns no error.
func pump(dst, src syscall.RawConn, p *pipe, moved func()) (written int64, eof bool, err error) {
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
		moved()
		m, err := drain(dst, p.r, n)
		written += int64(m)
		if err != nil {
			return written, false, err
		}
		moved()
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
