package mailtest

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

func startIMAP(t *testing.T) *IMAPServer {
	t.Helper()
	checkGoroutines(t)
	s, err := StartIMAP(IMAPOptions{Users: testUsers, Logger: quietLogger()})
	return started(t, s, err)
}

func dialIMAP(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIMAPAuth(t *testing.T) {
	tests := []struct {
		name   string
		login  func(c *imapclient.Client) error
		wantOK bool
	}{
		{"login", func(c *imapclient.Client) error { return c.Login("alice", "secret").Wait() }, true},
		{"login password with space", func(c *imapclient.Client) error { return c.Login("bob", "pass word").Wait() }, true},
		{"login bad password", func(c *imapclient.Client) error { return c.Login("alice", "nope").Wait() }, false},
		{"login unknown user", func(c *imapclient.Client) error { return c.Login("carol", "secret").Wait() }, false},
		{"authenticate plain", func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient("", "alice", "secret"))
		}, true},
		{"authenticate plain bad password", func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient("", "alice", "nope"))
		}, false},
	}
	s := startIMAP(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialIMAP(t, s.Addr)
			if err := c.WaitGreeting(); err != nil {
				t.Fatal(err)
			}
			err := tt.login(c)
			if (err == nil) != tt.wantOK {
				t.Fatalf("auth error = %v, want success %v", err, tt.wantOK)
			}
		})
	}
}

func TestIMAPCaps(t *testing.T) {
	s := startIMAP(t)
	c := dialIMAP(t, s.Addr)
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	caps := c.Caps()
	for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.Cap("AUTH=PLAIN")} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing from %v", want, caps)
		}
	}
	if caps.Has(imap.CapLoginDisabled) {
		t.Errorf("LOGINDISABLED advertised without TLS")
	}
}

func TestIMAPAppendFetch(t *testing.T) {
	s := startIMAP(t)
	c := dialIMAP(t, s.Addr)
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: a@example.org\r\nSubject: hello\r\n\r\nbody line\r\n.dot line\r\n")
	appendMessage(t, c, msg)

	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 1 {
		t.Fatalf("INBOX has %d messages, want 1", sel.NumMessages)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(bufs) != 1 {
		t.Fatalf("fetched %d messages, want 1", len(bufs))
	}
	if got := bufs[0].FindBodySection(section); !bytes.Equal(got, msg) {
		t.Errorf("fetched %q, want %q", got, msg)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

func appendMessage(t *testing.T, c *imapclient.Client, msg []byte) {
	t.Helper()
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := cmd.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestIMAPCloseWithClients checks that Close cuts connections still open.
func TestIMAPCloseWithClients(t *testing.T) {
	checkGoroutines(t)
	s, err := StartIMAP(IMAPOptions{Users: testUsers, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c := dialIMAP(t, s.Addr)
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-c.Closed()
	if err := s.Close(); err == nil {
		t.Errorf("second Close succeeded")
	}
}

func TestIMAPLogins(t *testing.T) {
	s := startIMAP(t)
	c := dialIMAP(t, s.Addr)
	if err := c.Login("alice", "nope").Wait(); err == nil {
		t.Fatal("LOGIN with a bad password succeeded")
	}
	if err := c.Authenticate(sasl.NewPlainClient("", "bob", "pass word")); err != nil {
		t.Fatal(err)
	}
	c = dialIMAP(t, s.Addr)
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	want := []Login{{"alice", "LOGIN", false}, {"bob", "AUTHENTICATE PLAIN", true}, {"alice", "LOGIN", true}}
	if got := s.Logins(); !slices.Equal(got, want) {
		t.Errorf("Logins() = %v, want %v", got, want)
	}
}

// A message added by the test is in the INBOX, for a session that starts
// after and for one already selected.
func TestIMAPAddMessage(t *testing.T) {
	s := startIMAP(t)
	first := []byte("Subject: first\r\n\r\none\r\n")
	if err := s.AddMessage("alice", first); err != nil {
		t.Fatal(err)
	}
	c := dialIMAP(t, s.Addr)
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT: %v messages, %v", sel, err)
	}
	second := []byte("Subject: second\r\n\r\ntwo\r\n")
	if err := s.AddMessage("alice", second); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil { // the server tells the session
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(bufs) != 2 {
		t.Fatalf("FETCH: %d messages, %v", len(bufs), err)
	}
	for i, want := range [][]byte{first, second} {
		if got := bufs[i].FindBodySection(section); !bytes.Equal(got, want) {
			t.Errorf("message %d = %q, want %q", i+1, got, want)
		}
	}
	if err := s.AddMessage("carol", first); err == nil || !strings.Contains(err.Error(), `no user "carol"`) {
		t.Errorf("AddMessage for an unknown user: %v", err)
	}
}
