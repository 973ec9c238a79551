package mailtest

import (
	"bytes"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

func startIMAP(t *testing.T) *IMAPServer {
	t.Helper()
	checkGoroutines(t)
	s, err := StartIMAP(testUsers, quietLogger())
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
	s, err := StartIMAP(testUsers, quietLogger())
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
