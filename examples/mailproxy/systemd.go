package main

import (
	"net"
	"os"
	"strconv"

	"github.com/mailproxy/mailproxy"
)

// inheritEnv names the listening sockets that the old binary hands to the
// new one in an upgrade, in the notation of nginx's NGINX variable
// ("3;4;5;"). It is ours rather than NGINX, so that an nginx and a
// mailproxy never take each other's sockets.
const inheritEnv = "MAILPROXY"

// inheritedSockets returns the listening sockets this process was started
// with: by systemd's socket activation (LISTEN_FDS), or by the old binary
// in an upgrade (inheritEnv). parent is then the old binary's pid.
func inheritedSockets() (lns []net.Listener, parent int, err error) {
	lns, err = mailproxy.SystemdListeners()
	if err != nil {
		return nil, 0, err
	}
	if _, upgrade := os.LookupEnv(inheritEnv); upgrade {
		parent = os.Getppid()
	}
	old, err := mailproxy.InheritedListeners(inheritEnv)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, 0, err
	}
	return append(lns, old...), parent, nil
}

// notifySocket is the connection to systemd's NOTIFY_SOCKET. It is opened
// before the switch of user, as the socket may be one that only root may
// connect to; a connected socket goes on working after.
type notifySocket struct{ c net.Conn }

// dialNotify connects to NOTIFY_SOCKET; without it, it returns nil, whose
// methods do nothing. The variable stays set for the new binary of an
// upgrade.
func dialNotify() (*notifySocket, error) {
	addr := os.Getenv("NOTIFY_SOCKET") // "@name" is in the abstract namespace, as Go reads it too
	if addr == "" {
		return nil, nil
	}
	c, err := net.Dial("unixgram", addr)
	if err != nil {
		return nil, err
	}
	return &notifySocket{c}, nil
}

// ready tells systemd (a Type=notify service) that this process serves
// and is the service's main process: after an upgrade, the new binary
// takes over from the old one.
func (n *notifySocket) ready() error {
	if n == nil {
		return nil
	}
	_, err := n.c.Write([]byte("MAINPID=" + strconv.Itoa(os.Getpid()) + "\nREADY=1"))
	return err
}

// Close closes the connection.
func (n *notifySocket) Close() error {
	if n == nil {
		return nil
	}
	return n.c.Close()
}
