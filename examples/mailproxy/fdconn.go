package main

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// maxFDs bounds the descriptors one message carries: Linux's SCM_MAX_FD.
const maxFDs = 253

// fdConn carries gob messages over a unix stream socket, each with the
// descriptors it names (SCM_RIGHTS): the link between the program and its
// privileged helper. Descriptors travel with the first byte of their
// message, and every read takes the control data that comes with it, so
// that the gob decoder may read ahead. One goroutine sends and one
// receives at a time.
type fdConn struct {
	c *net.UnixConn

	out bytes.Buffer
	enc *gob.Encoder // to out

	dec *gob.Decoder // from fdReader
	in  fdReader
}

func newFDConn(c *net.UnixConn) *fdConn {
	fc := &fdConn{c: c, in: fdReader{c: c, oob: make([]byte, syscall.CmsgSpace(maxFDs*4))}}
	fc.enc = gob.NewEncoder(&fc.out)
	fc.dec = gob.NewDecoder(&fc.in)
	return fc
}

// fdConnOf makes an fdConn of an inherited or socketpair descriptor.
func fdConnOf(f *os.File) (*fdConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s is not a unix socket", f.Name())
	}
	return newFDConn(uc), nil
}

// send sends v with files.
func (c *fdConn) send(v any, files ...*os.File) error {
	if len(files) > maxFDs {
		return fmt.Errorf("%d descriptors in one message, at most %d", len(files), maxFDs)
	}
	c.out.Reset()
	if err := c.enc.Encode(len(files)); err != nil {
		return err
	}
	if err := c.enc.Encode(v); err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	b := c.out.Bytes()
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
	var n int
	if err := c.dec.Decode(&n); err != nil {
		return nil, err
	}
	if err := c.dec.Decode(v); err != nil {
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
