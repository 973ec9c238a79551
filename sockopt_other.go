//go:build !linux

package mailproxy

import (
	"errors"
	"fmt"
)

var errUnsupported = errors.New("not supported on this system")

// setSocketOptions refuses the listen parameters that need Linux socket
// options, rather than ignoring them; on an open socket, ipv6only and
// reuseport are left as they are.
func setSocketOptions(_ uintptr, ep Endpoint, lc ListenConfig, open bool) error {
	if lc.RcvBuf != 0 || lc.SndBuf != 0 || lc.keepAliveSet() || !open && (lc.IPv6Only != Default || lc.ReusePort) {
		return fmt.Errorf("listen %s: socket options: %w", ep, errUnsupported)
	}
	return nil
}

func relisten(uintptr, int) error {
	return fmt.Errorf("backlog: %w", errUnsupported)
}
