package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/mailtest"
)

// The program's callback logs a user in through the proxy to the backend
// its users file names.
func TestCallbackProgram(t *testing.T) {
	be, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "bob", Password: "pw"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	users := filepath.Join(t.TempDir(), "users.txt")
	os.WriteFile(users, []byte("# user:password:backend\nbob:pw:"+be.Addr+"\n"), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *mailproxy.Proxy, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-users", users, "-imap", "127.0.0.1:0", "-pop3", "127.0.0.1:0"}, func(p *mailproxy.Proxy) { ready <- p })
	}()
	p := <-ready

	c, err := imapclient.DialInsecure(p.ServerAddrs(0)[0].String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("bob", "pw").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("select through the proxy: %v", err)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReadUsersErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.txt")
	os.WriteFile(path, []byte("bob-without-colons\n"), 0o600)
	if _, err := readUsers(path); err == nil || err.Error() != path+":1: want user:password:host:port" {
		t.Fatalf("err = %v", err)
	}
}
