//go:build !linux

package relay

import (
	"errors"
	"net"
)

// canSplice: splice(2) is Linux's; elsewhere Run copies through a buffer.
const canSplice = false

// copySplice is never called where canSplice is false.
func (r *relay) copySplice(dst, src *net.TCPConn) (int64, error) {
	return 0, errors.ErrUnsupported
}
