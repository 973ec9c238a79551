package main

import (
	byteorder "encoding/binary" // the package has a test helper named binary
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// socketPair returns the two ends of a unix stream socket pair as files.
func socketPair(t testing.TB) (a, b *os.File) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
}

// helperEnd makes the helper's end of a socket pair of f.
func helperEnd(t testing.TB, f *os.File) *fdConn {
	c, err := fdConnOf(f, maxRequest)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawMessage returns the bytes send writes for v.
func rawMessage(t testing.TB, v any) []byte {
	a, b := socketPair(t)
	defer b.Close()
	c, err := fdConnOf(a, maxReply)
	a.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.send(v); err != nil {
		t.Fatal(err)
	}
	c.Close()
	raw, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// readRequests plays raw to the helper's end of a socket pair, as a
// program taken over might send it, and reads requests until one fails.
func readRequests(t testing.TB, raw []byte) (requests []helperRequest, err error) {
	a, b := socketPair(t)
	go func() {
		a.Write(raw)
		a.Close()
	}()
	c := helperEnd(t, b)
	defer c.Close()
	for {
		var req helperRequest
		files, err := c.receive(&req, "fuzz")
		closeFiles(files)
		if err != nil {
			return requests, err
		}
		requests = append(requests, req)
	}
}

// The helper reads requests as the program sends them, and refuses a
// message longer than maxRequest before allocating anything for it.
func TestHelperRequestBound(t *testing.T) {
	raw := append(rawMessage(t, helperRequest{Op: opOpenLog, Path: "/var/log/mail.log"}), rawMessage(t, helperRequest{Op: opLoad})...)
	got, err := readRequests(t, raw)
	if len(got) != 2 || got[0].Path != "/var/log/mail.log" || got[1].Op != opLoad || !errors.Is(err, io.EOF) {
		t.Fatalf("read %+v, then %v", got, err)
	}

	huge := byteorder.BigEndian.AppendUint32(nil, 1<<30)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = readRequests(t, append(huge, "more"...))
	runtime.ReadMemStats(&after)
	if err == nil || err.Error() != "a message of 1073741824 bytes, at most 65536" {
		t.Errorf("a message announced as 1 GiB: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing it allocated %d bytes", grew)
	}
}

// FuzzHelperRequest feeds the privileged helper's reader what a program
// taken over might send: it never panics or hangs, and never allocates a
// message beyond maxRequest.
func FuzzHelperRequest(f *testing.F) {
	f.Add(rawMessage(f, helperRequest{Op: opOpenLog, Path: "/var/log/mail.log"}))
	f.Add(append(rawMessage(f, helperRequest{Op: opLoad}), rawMessage(f, helperRequest{Op: opUpgrade})...))
	f.Add(byteorder.BigEndian.AppendUint32(nil, maxRequest+1))
	f.Add([]byte{0, 0, 0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		requests, err := readRequests(t, raw)
		if err == nil {
			t.Fatalf("read %d requests and no end", len(requests))
		}
	})
}
