package mailproxy

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// setSocketOptions applies the listen parameters that are socket options.
// On an open (bound) socket, ipv6only and reuseport are left as they are:
// only a new socket takes them.
func setSocketOptions(fd uintptr, ep Endpoint, lc ListenConfig, open bool) error {
	s := int(fd)
	opts := []struct {
		on          bool
		level, name int
		value       int
		what        string
	}{
		{lc.RcvBuf != 0, unix.SOL_SOCKET, unix.SO_RCVBUF, lc.RcvBuf, "rcvbuf"},
		{lc.SndBuf != 0, unix.SOL_SOCKET, unix.SO_SNDBUF, lc.SndBuf, "sndbuf"},
		{ep.Network == "tcp6" && !open, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolInt(lc.IPv6Only != Off), "ipv6only"},
		{lc.ReusePort && !open, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "reuseport"},
		{lc.keepAliveSet(), unix.SOL_SOCKET, unix.SO_KEEPALIVE, boolInt(lc.KeepAlive != Off), "so_keepalive"},
		{lc.KeepIdle != 0, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, seconds(lc.KeepIdle), "so_keepalive idle"},
		{lc.KeepIntvl != 0, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, seconds(lc.KeepIntvl), "so_keepalive interval"},
		{lc.KeepCnt != 0, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, lc.KeepCnt, "so_keepalive count"},
	}
	for _, o := range opts {
		if !o.on {
			continue
		}
		if err := unix.SetsockoptInt(s, o.level, o.name, o.value); err != nil {
			return fmt.Errorf("listen %s: %s: %w", ep, o.what, err)
		}
	}
	return nil
}

func relisten(fd uintptr, backlog int) error {
	return unix.Listen(int(fd), backlog)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// seconds rounds d up to whole seconds, at least one.
func seconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
