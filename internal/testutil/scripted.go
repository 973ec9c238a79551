package testutil

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
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
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { // the proxy may read none of it
		io.WriteString(conn, *b.script.Load())
		conn.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(io.Discard, conn)
}

// FuzzServer is what a protocol's Server offers FuzzDialogue.
type FuzzServer interface {
	Serve(l net.Listener) error
	Shutdown(ctx context.Context) error
}

// FuzzBackendSide runs the fuzz target of a protocol's backend side: each
// input is what a client says and what a ScriptedBackend says. newServer
// makes the protocol's Server with route, which sends alice (password
// "secret") and logins without authentication (SMTP's smtp_auth none) to
// that backend; input lets it vary its settings with the client's input.
func FuzzBackendSide(f *testing.F, newServer func(route auth.Authenticator, input string) FuzzServer) {
	backend := StartScripted(f)
	route := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		if req.Method == auth.MethodNone || req.User == "alice" && req.Password == "secret" {
			return &auth.Result{Backend: backend.Addr}, nil
		}
		return &auth.Result{Error: "Invalid login or password"}, nil
	})
	f.Fuzz(func(t *testing.T, input, script string) {
		backend.Script(script)
		srv := newServer(route, input)
		FuzzDialogue(t, input, srv.Serve, srv.Shutdown)
	})
}
