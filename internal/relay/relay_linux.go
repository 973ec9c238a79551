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

// copySplice moves src to dst with splice(2) until the end of src's input.
// It waits for bytes holding no pipe, takes one from the pool while bytes
// are ready, and gives it back, empty, when src runs dry: an idle
// direction holds nothing but its sockets. When no pipe can be had
// (descriptors run out), the rest goes through a buffer.
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
		eof, err := waitReadable(srcRC)
		if err != nil || eof {
			return written, err
		}
		p, err := getPipe()
		if err != nil {
			n, err := r.copyBuffered(dst, src)
			return written + n, err
		}
		n, eof, err := r.pump(dstRC, srcRC, p)
		written += n
		p.free(err == nil)
		if err != nil || eof {
			return written, err
		}
	}
}

// waitReadable waits until src has bytes to read or its input ended,
// peeking at one byte without taking it.
func waitReadable(src syscall.RawConn) (eof bool, err error) {
	var peekErr error
	err = src.Read(func(fd uintptr) bool {
		var b [1]byte
		var n int
		for {
			n, _, peekErr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if peekErr != unix.EINTR {
				break
			}
		}
		if peekErr == unix.EAGAIN {
			return false // wait for the poller
		}
		eof = peekErr == nil && n == 0
		return true
	})
	if err == nil {
		err = peekErr
	}
	return eof, err
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
