package relay

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// kernelBytes returns a function that sums, over both sockets, the bytes
// the kernel has received and the bytes the peer has acknowledged
// (TCP_INFO's tcpi_bytes_received and tcpi_bytes_acked, Linux 4.1 and
// later). The sum grows whenever splice moves data, so the idle watchdog
// can see progress in the middle of a long io.Copy without deadlines. It
// returns nil when TCP_INFO cannot be read, and Run then copies through
// a buffer.
//
// The function is called from one goroutine at a time. After a failed
// read (a socket closed by Run) it repeats the last sum: no progress.
func kernelBytes(a, b *net.TCPConn) func() uint64 {
	var conns [2]syscall.RawConn
	for i, c := range [...]*net.TCPConn{a, b} {
		rc, err := c.SyscallConn()
		if err != nil {
			return nil
		}
		conns[i] = rc
	}
	read := func() (uint64, bool) {
		var sum uint64
		for _, rc := range conns {
			var info *unix.TCPInfo
			var err error
			cerr := rc.Control(func(fd uintptr) {
				info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			})
			if cerr != nil || err != nil {
				return 0, false
			}
			sum += info.Bytes_received + info.Bytes_acked
		}
		return sum, true
	}
	last, ok := read()
	if !ok {
		return nil
	}
	return func() uint64 {
		if n, ok := read(); ok {
			last = n
		}
		return last
	}
}
