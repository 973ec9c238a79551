//go:build unix

package mailproxy

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// dupListener duplicates the descriptor of ln into a new file. Unlike
// ln's File method, the duplicate stays non-blocking when os/exec takes
// its descriptor, so the listener here goes on accepting as before.
func dupListener(ln net.Listener, name string) (*os.File, error) {
	rc, err := rawConn(ln)
	if err != nil {
		return nil, err
	}
	var fd int
	if err := control(rc, func(s uintptr) (err error) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
		return err
	}); err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// checkListening reports whether fd is a listening socket, without
// touching it otherwise.
func checkListening(fd int) error {
	on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	switch {
	case err == unix.ENOTSOCK:
		return errNotListening
	case err != nil:
		return os.NewSyscallError("getsockopt", err)
	case on == 0:
		return errNotListening
	}
	return nil
}
