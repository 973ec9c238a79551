//go:build !linux

package relay

import "context"

// canPark: the readiness loop and splice(2) are Linux's; elsewhere every
// session is relayed through buffers.
const canPark = false

// startParked is never called where canPark is false.
func startParked(ctx context.Context, s Session, done func(Stats, error)) {
	panic("relay: no readiness loop on this system")
}
