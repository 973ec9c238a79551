package mailproxy

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/mailproxy/mailproxy/imap"
	"golang.org/x/sys/unix"
)

// A reload that keeps an address but changes socket options applies them
// to the open socket.
func TestReloadReappliesSocketOptions(t *testing.T) {
	cfg := func(lc ListenConfig) *Config {
		return &Config{Servers: []ServerConfig{{Name: "s", Listen: []ListenConfig{lc}, Server: &imap.Server{}}}}
	}
	p := &Proxy{Config: cfg(ListenConfig{Address: "127.0.0.1:0", Backlog: 16}), Logger: slog.New(slog.DiscardHandler)}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ln := onlySocket(t, p)
	if got := backlogOf(t, ln); got != 16 {
		t.Fatalf("backlog %d, want 16", got)
	}
	if err := p.Reload(context.Background(), cfg(ListenConfig{Address: "127.0.0.1:0", Backlog: 48, RcvBuf: 32 << 10})); err != nil {
		t.Fatal(err)
	}
	if onlySocket(t, p) != ln {
		t.Fatal("the socket was replaced")
	}
	if got := backlogOf(t, ln); got != 48 {
		t.Errorf("backlog %d after reload, want 48", got)
	}
	if got := sockopt(t, ln, unix.SOL_SOCKET, unix.SO_RCVBUF); got != 64<<10 {
		t.Errorf("rcvbuf %d after reload, want %d", got, 64<<10)
	}
}

func onlySocket(t *testing.T, p *Proxy) *net.TCPListener {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sockets) != 1 {
		t.Fatalf("%d sockets", len(p.sockets))
	}
	for _, s := range p.sockets {
		return s.ln.(*net.TCPListener)
	}
	return nil
}
