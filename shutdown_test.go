package mailproxy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/session"
)

// relayConfig is an IMAP server on 127.0.0.1:0 that relays alice to an
// in-process backend, with a shutdown timeout.
func relayConfig(t *testing.T, timeout time.Duration) *mailproxy.Config {
	t.Helper()
	be, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "alice", Password: "secret"}}, Logger: testutil.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return &mailproxy.Config{ShutdownTimeout: timeout, Servers: []mailproxy.ServerConfig{{
		Name: "imap", Listen: []mailproxy.ListenConfig{local("127.0.0.1:0")},
		Server: &imap.Server{Config: session.Config{Logger: testutil.Discard,
			Auth: auth.Static{"alice": {Password: "secret", Backend: be.Addr}}}},
	}}}
}

// relayed returns an idle session relayed to the backend.
func relayed(t *testing.T, p *mailproxy.Proxy) *testutil.Client {
	t.Helper()
	c := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
	c.Exchange("", "* OK")
	c.Exchange("a LOGIN alice secret\r\n", "a OK")
	return c
}

// closedWithin waits for the server to close c and reports how long it
// took, failing the test beyond limit.
func closedWithin(t *testing.T, c *testutil.Client, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.Conn.SetReadDeadline(start.Add(limit))
	if !c.Closed() {
		t.Fatal("the server sent a line instead of closing")
	}
	took := time.Since(start)
	if took >= limit {
		t.Fatalf("the session is still open after %v", limit)
	}
	return took
}

// The sessions of a Config that a reload replaced are closed when its
// ShutdownTimeout expires (worker_shutdown_timeout), while the new Config
// serves.
func TestShutdownTimeoutAfterReload(t *testing.T) {
	const timeout = 300 * time.Millisecond
	cfg := relayConfig(t, timeout)
	p := start(t, cfg)
	old := relayed(t, p)
	old.Exchange("b NOOP\r\n", "b OK")
	if err := p.Reload(context.Background(), relayConfig(t, 0)); err != nil {
		t.Fatal(err)
	}
	fresh := relayed(t, p)
	took := closedWithin(t, old, 10*time.Second)
	if took < timeout/2 {
		t.Errorf("the old session was closed after %v, before the timeout of %v", took, timeout)
	}
	fresh.Exchange("b NOOP\r\n", "b OK") // the new Config has no timeout and is not stopping
}

// Shutdown closes the sessions still open when the running Config's
// ShutdownTimeout expires, and says so with context.DeadlineExceeded.
func TestShutdownTimeoutAfterShutdown(t *testing.T) {
	const timeout = 300 * time.Millisecond
	p := start(t, relayConfig(t, timeout))
	c := relayed(t, p)
	begin := time.Now()
	err := p.Shutdown(context.Background())
	took := time.Since(begin)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if took < timeout/2 || took > 5*time.Second {
		t.Errorf("Shutdown took %v with a timeout of %v", took, timeout)
	}
	closedWithin(t, c, time.Second)
}

// Shutdown returns as soon as the last session has ended. In the
// dialogue, the session ends with the proxy's last word, even when the
// client keeps the connection open (the close no longer lingers). A
// relayed session ends when both sides have closed: the backend after its
// answer to LOGOUT, the client when it reads it.
func TestShutdownReturnsWithTheLastSession(t *testing.T) {
	tests := []struct {
		name  string
		login bool // relayed: the client closes after the LOGOUT reply
	}{
		{"in the dialogue", false},
		{"relayed", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, relayConfig(t, 0))
			c := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
			c.Exchange("", "* OK")
			if tt.login {
				c.Exchange("a LOGIN alice secret\r\n", "a OK")
			}
			done := make(chan error, 1)
			go func() { done <- p.Shutdown(context.Background()) }()
			testutil.WaitFor(t, "the socket to close", func() bool { return !testutil.Accepting(p.ServerAddrs(0)[0].String()) })
			select {
			case err := <-done:
				t.Fatalf("Shutdown returned (%v) with a session open", err)
			default:
			}
			c.Exchange("z LOGOUT\r\n", "* BYE", "z OK")
			if tt.login {
				c.Conn.Close()
			}
			ended := time.Now()
			select {
			case err := <-done:
				t.Logf("Shutdown returned %v after the LOGOUT reply", time.Since(ended))
				if err != nil {
					t.Errorf("Shutdown = %v", err)
				}
			case <-time.After(500 * time.Millisecond):
				t.Fatal("Shutdown still waits 500ms after the last session's LOGOUT")
			}
		})
	}
}
