package config

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/internal/testutil"
)

// authService is an auth_http service that refuses every login and counts
// the connections open to it.
type authService struct {
	*httptest.Server
	conns testutil.ConnCounter
	mu    sync.Mutex
	asked int
}

func startAuthService(t *testing.T) *authService {
	a := &authService{}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.asked++
		a.mu.Unlock()
		w.Header().Set("Auth-Status", "Invalid login")
	}))
	a.conns.Track(a.Server)
	a.Start()
	t.Cleanup(a.Close)
	return a
}

func (a *authService) counts() (open, asked int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conns.Open(), a.asked
}

// waitFor polls cond for up to five seconds.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A reload hands the old configuration's auth_http client to the Proxy,
// which closes its kept-alive connection once the old servers have
// drained; a stop closes the running one's. Nothing of either is left:
// no connection, no goroutine.
func TestReloadClosesOldConfiguration(t *testing.T) {
	service := startAuthService(t)
	conf := fmt.Sprintf("mail { auth_http %s/auth; server { listen 127.0.0.1:0; protocol imap; } }", service.URL)
	load := func() *mailproxy.Config {
		cfg, err := loadString(t, conf)
		if err != nil {
			t.Fatal(err)
		}
		if len(withoutLogs(cfg.Proxy.Resources)) != 1 {
			t.Fatalf("Resources %v, want the auth_http client", cfg.Proxy.Resources)
		}
		return cfg.Proxy
	}
	login := func(p *mailproxy.Proxy, want int) {
		t.Helper()
		c := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
		c.Line()
		c.Exchange("a LOGIN alice secret\r\n", "a NO [AUTHENTICATIONFAILED] Invalid login")
		if !c.Closed() {
			t.Error("the session goes on after a refusal without Auth-Wait")
		}
		if open, asked := service.counts(); open != 1 || asked != want {
			t.Fatalf("%d connections open to the auth service after %d requests, want 1 after %d", open, asked, want)
		}
	}
	before := runtime.NumGoroutine()
	p := &mailproxy.Proxy{Config: load(), Logger: quiet()}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	login(p, 1)
	if err := p.Reload(context.Background(), load()); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { open, _ := service.counts(); return open == 0 }) {
		t.Fatal("the replaced configuration's connection to the auth service is still open")
	}
	login(p, 2) // the new configuration's own connection
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { open, _ := service.counts(); return open == 0 }) {
		t.Error("the running configuration's connection to the auth service is open after Shutdown")
	}
	if !waitFor(func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Shutdown, %d before Start:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
	}
}
