package main

import (
	"bytes"
	byteorder "encoding/binary" // the package has a test helper named binary
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"syscall"
)

// maxFDs bounds the descriptors one message carries: Linux's SCM_MAX_FD.
const maxFDs = 253

// The largest messages each end reads. The helper, root, reads the
// program's requests (an operation and a path), so that a program taken
// over cannot make it allocate more; the program reads the helper's
// replies, which carry the configuration's files.
const (
	maxRequest = 64 << 10
	maxReply   = 1 << 30
)

// fdConn carries gob messages over a unix stream socket, each with the
// descriptors it names (SCM_RIGHTS): the link between the program and its
// privileged helper. A message is its length (4 bytes, big-endian), then
// a gob stream of its own: the count of descriptors and the value. Its
// descriptors travel with its first byte, and it is read to its end and
// no further, so that the descriptors of the next one wait for it. A
// message beyond the reader's bound is refused before anything is
// allocated for it: gob's decoder is not hardened against hostile input,
// which the helper must assume of a program taken over. One goroutine
// sends and one receives at a time.
type fdConn struct {
	c   *net.UnixConn
	max int // the largest message receive accepts
	out bytes.Buffer
	in  fdReader
}

func newFDConn(c *net.UnixConn, max int) *fdConn {
	return &fdConn{c: c, max: max, in: fdReader{c: c, oob: make([]byte, syscall.CmsgSpace(maxFDs*4))}}
}

// fdConnOf makes an fdConn of an inherited or socketpair descriptor,
// reading messages up to max bytes.
func fdConnOf(f *os.File, max int) (*fdConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s is not a unix socket", f.Name())
	}
	return newFDConn(uc, max), nil
}

// send sends v with files.
func (c *fdConn) send(v any, files ...*os.File) error {
	if len(files) > maxFDs {
		return fmt.Errorf("%d descriptors in one message, at most %d", len(files), maxFDs)
	}
	c.out.Reset()
	c.out.Write(make([]byte, 4)) // the length, set below
	enc := gob.NewEncoder(&c.out)
	if err := enc.Encode(len(files)); err != nil {
		return err
	}
	if err := enc.Encode(v); err != nil {
		return err
	}
	b := c.out.Bytes()
	if len(b)-4 > math.MaxUint32 {
		return fmt.Errorf("a message of %d bytes", len(b)-4)
	}
	byteorder.BigEndian.PutUint32(b, uint32(len(b)-4))
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	n, _, err := c.c.WriteMsgUnix(b, oob, nil)
	if err == nil && n < len(b) {
		_, err = c.c.Write(b[n:]) // a stream socket may take part of it
	}
	return err
}

// receive decodes the next message into v and returns the files that came
// with it, named name; the caller closes them. Descriptors beyond those
// the message announced are closed.
func (c *fdConn) receive(v any, name string) ([]*os.File, error) {
	defer c.in.drop()
	var head [4]byte
	if _, err := io.ReadFull(&c.in, head[:]); err != nil {
		return nil, err
	}
	size := byteorder.BigEndian.Uint32(head[:])
	if uint64(size) > uint64(c.max) {
		return nil, fmt.Errorf("a message of %d bytes, at most %d", size, c.max)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(&c.in, body); err != nil {
		return nil, err
	}
	dec := gob.NewDecoder(bytes.NewReader(body))
	var n int
	if err := dec.Decode(&n); err != nil {
		return nil, err
	}
	if err := dec.Decode(v); err != nil {
		return nil, err
	}
	if n < 0 || n > len(c.in.fds) {
		return nil, fmt.Errorf("a message announced %d descriptors and brought %d", n, len(c.in.fds))
	}
	files := make([]*os.File, n)
	for i, fd := range c.in.fds[:n] {
		files[i] = os.NewFile(uintptr(fd), name)
	}
	c.in.fds = c.in.fds[n:]
	return files, nil
}

func (c *fdConn) Close() error { return c.c.Close() }

// fdReader reads a unix socket, keeping the descriptors that come with
// the bytes.
type fdReader struct {
	c   *net.UnixConn
	oob []byte
	fds []int
}

func (r *fdReader) Read(p []byte) (int, error) {
	n, oobn, flags, _, err := r.c.ReadMsgUnix(p, r.oob)
	if oobn > 0 {
		msgs, perr := syscall.ParseSocketControlMessage(r.oob[:oobn])
		for _, m := range msgs {
			if fds, err := syscall.ParseUnixRights(&m); err == nil {
				r.fds = append(r.fds, fds...)
			}
		}
		if perr != nil && err == nil {
			err = perr
		}
	}
	if flags&syscall.MSG_CTRUNC != 0 && err == nil {
		err = errors.New("descriptors lost: too many in one message")
	}
	return n, err // io.EOF once the other end is closed
}

// drop closes the descriptors no message claimed.
func (r *fdReader) drop() {
	for _, fd := range r.fds {
		syscall.Close(fd)
	}
	r.fds = nil
}
