package mailproxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
)

// openSocket opens the listening socket for ep with the socket options of
// lc. Keepalive is set on the listening socket and inherited by the
// accepted ones, as in nginx, so Go's own default keepalive is turned off.
func openSocket(ctx context.Context, ep Endpoint, lc ListenConfig) (net.Listener, error) {
	nlc := net.ListenConfig{KeepAlive: -1}
	nlc.SetMultipathTCP(lc.Multipath)
	nlc.Control = func(_, _ string, rc syscall.RawConn) error {
		return control(rc, func(fd uintptr) error { return setSocketOptions(fd, ep, lc) })
	}
	if ep.Network == "unix" {
		if err := removeStaleSocket(ep.Address); err != nil {
			return nil, err
		}
	}
	ln, err := nlc.Listen(ctx, ep.Network, ep.Address)
	if err != nil {
		return nil, err
	}
	if lc.Backlog > 0 {
		if err := setBacklog(ln, lc.Backlog); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// control runs set on the socket's descriptor and returns its error.
func control(rc syscall.RawConn, set func(fd uintptr) error) error {
	var setErr error
	if err := rc.Control(func(fd uintptr) { setErr = set(fd) }); err != nil {
		return err
	}
	return setErr
}

// setBacklog changes the listen queue length of an open socket: Go always
// listens with the system maximum, and listen(2) may be called again.
func setBacklog(ln net.Listener, backlog int) error {
	rc, err := rawConn(ln)
	if err != nil {
		return err
	}
	return control(rc, func(fd uintptr) error { return relisten(fd, backlog) })
}

func rawConn(ln net.Listener) (syscall.RawConn, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T: %w", ln, errNoDescriptor)
	}
	return sc.SyscallConn()
}

// removeStaleSocket removes a unix socket file left by a process that did
// not close it; a file of another kind is left alone (bind then fails).
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || fi.Mode()&fs.ModeSocket == 0 {
		return err
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("listen unix:%s: address already in use", path)
	}
	return os.Remove(path)
}
