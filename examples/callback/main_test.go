package main

import (
	"context"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/mailtest"
)

// The program's callback, in front of backends from the mailtest package,
// as a program tests its own Authenticator: each user lands on the backend
// the users file names, over IMAP and POP3, and a bad password is refused
// by the callback before any backend hears of it.
func TestCallbackProgram(t *testing.T) {
	alice := startIMAP(t, mailtest.User{Name: "alice", Password: "pw-a"})
	bob := startIMAP(t, mailtest.User{Name: "bob", Password: "pw-b"})
	carol, err := mailtest.StartPOP3(mailtest.POP3Options{Users: []mailtest.User{{Name: "carol", Password: "pw-c"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { carol.Close() })
	if err := carol.AddMessage("carol", []byte("Subject: for carol\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users.txt")
	os.WriteFile(users, []byte("# user:password:backend\n"+
		"alice:pw-a:"+alice.Addr+"\n"+
		"bob:pw-b:"+bob.Addr+"\n"+
		"carol:pw-c:"+carol.Addr+"\n"), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *mailproxy.Proxy, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-users", users, "-imap", "127.0.0.1:0", "-pop3", "127.0.0.1:0"}, func(p *mailproxy.Proxy) { ready <- p })
	}()
	p := <-ready
	imapAddr, pop3Addr := p.ServerAddrs(0)[0].String(), p.ServerAddrs(1)[0].String()

	imapTests := []struct {
		user, password string
		wantErr        string // "" for a login that works
	}{
		{"alice", "pw-a", ""},
		{"bob", "pw-b", ""},
		{"bob", "pw-a", "Invalid login or password"},
	}
	for _, tt := range imapTests {
		t.Run(fmt.Sprintf("imap %s %s", tt.user, tt.password), func(t *testing.T) {
			err := imapLogin(imapAddr, tt.user, tt.password)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("login: %v, want %q", err, tt.wantErr)
			}
		})
	}
	t.Run("pop3 carol", func(t *testing.T) {
		got, err := pop3Retr(pop3Addr, "carol", "pw-c")
		if err != nil || !slices.Contains(got, "Subject: for carol") {
			t.Fatalf("RETR 1: %q, %v", got, err)
		}
	})

	// Each backend saw only its own user, and only good passwords.
	for _, be := range []struct {
		name string
		got  []mailtest.Login
		want []mailtest.Login
	}{
		{"alice's", alice.Logins(), []mailtest.Login{{User: "alice", Method: "LOGIN", OK: true}}},
		{"bob's", bob.Logins(), []mailtest.Login{{User: "bob", Method: "LOGIN", OK: true}}},
		{"carol's", carol.Logins(), []mailtest.Login{{User: "carol", Method: "USER", OK: true}}},
	} {
		if !slices.Equal(be.got, be.want) {
			t.Errorf("%s backend saw %v, want %v", be.name, be.got, be.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func startIMAP(t *testing.T, u mailtest.User) *mailtest.IMAPServer {
	t.Helper()
	s, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{u}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// imapLogin logs in through the proxy and selects INBOX on the backend.
func imapLogin(addr, user, password string) error {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		return err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return fmt.Errorf("select through the proxy: %w", err)
	}
	return c.Logout().Wait()
}

// pop3Retr logs in with USER and PASS through the proxy and returns the
// lines of message 1.
func pop3Retr(addr, user, password string) ([]string, error) {
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	for _, cmd := range []string{"", "USER " + user, "PASS " + password, "RETR 1"} {
		if cmd != "" {
			c.PrintfLine("%s", cmd)
		}
		if line, err := c.ReadLine(); err != nil || !strings.HasPrefix(line, "+OK") {
			return nil, fmt.Errorf("%q: %q, %v", cmd, line, err)
		}
	}
	return c.ReadDotLines()
}

func TestReadUsersErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.txt")
	os.WriteFile(path, []byte("bob-without-colons\n"), 0o600)
	if _, err := readUsers(path); err == nil || err.Error() != path+":1: want user:password:host:port" {
		t.Fatalf("err = %v", err)
	}
}
