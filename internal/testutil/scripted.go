package testutil

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// ScriptedBackend is a backend for fuzz targets of the proxy's backend
// side: every connection it accepts gets the current script written as it
// is, whatever the proxy says, then the end of the backend's output; what
// the proxy sends is read until it closes the connection (five seconds at
// most). A script that stops short ends at once, not at a timeout.
type ScriptedBackend struct {
	// Addr is where it listens, on 127.0.0.1.
	Addr   string
	script atomic.Pointer[string]
}

// StartScripted starts a ScriptedBackend that serves until the test ends.
func StartScripted(t testing.TB) *ScriptedBackend {
	t.Helper()
	b := &ScriptedBackend{}
	b.Script("")
	b.Addr = Accept(t, b.serve).Addr().String()
	return b
}

// Script sets what the connections accepted from now on are sent.
func (b *ScriptedBackend) Script(s string) { b.script.Store(&s) }

func (b *ScriptedBackend) serve(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { // the proxy may read none of it
		io.WriteString(conn, *b.script.Load())
		conn.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(io.Discard, conn)
}
