package engine

import (
	"bufio"
	"io"
	"sync"
)

// The dialogue before proxying reads and writes through buffers taken
// from pools, and gives them back when the relay starts or the session
// ends: a relayed session, which may idle for hours, holds none.

// readerPools and writerPools hold a *sync.Pool per buffer size. The sizes
// come from the configuration (client buffers) and the engine, so there
// are few of them.
var readerPools, writerPools sync.Map

func poolOf(pools *sync.Map, size int, make func() any) *sync.Pool {
	if p, ok := pools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := pools.LoadOrStore(size, &sync.Pool{New: make})
	return p.(*sync.Pool)
}

// newReader returns a pooled reader of src with a buffer of size bytes
// (16 at least).
func newReader(src io.Reader, size int) *bufio.Reader {
	size = max(size, 16)
	br := poolOf(&readerPools, size, func() any { return bufio.NewReaderSize(nil, size) }).Get().(*bufio.Reader)
	br.Reset(src)
	return br
}

// freeReader gives br back to its pool; it must not be used after.
func freeReader(br *bufio.Reader) {
	br.Reset(nil)
	poolOf(&readerPools, br.Size(), nil).Put(br)
}

// newWriter returns a pooled writer to dst with a buffer of size bytes.
func newWriter(dst io.Writer, size int) *bufio.Writer {
	bw := poolOf(&writerPools, size, func() any { return bufio.NewWriterSize(nil, size) }).Get().(*bufio.Writer)
	bw.Reset(dst)
	return bw
}

// freeWriter gives bw back to its pool; it must not be used after.
func freeWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	poolOf(&writerPools, bw.Size(), nil).Put(bw)
}
