//go:build !linux

package mailproxy

import (
	"errors"
	"fmt"
)

var errUnsupported = errors.New("not supported on this system")

// setSocketOptions refuses the listen parameters that need Linux socket
// options, rather than ignoring them.
func setSocketOptions(_ uintptr, ep Endpoint, lc ListenConfig) error {
	if lc.RcvBuf != 0 || lc.SndBuf != 0 || lc.IPv6Only != Default || lc.ReusePort || lc.keepAliveSet() {
		return fmt.Errorf("listen %s: socket options: %w", ep, errUnsupported)
	}
	return nil
}

func relisten(uintptr, int) error {
	return fmt.Errorf("backlog: %w", errUnsupported)
}
