package mailtest

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func startSMTP(t *testing.T, opts SMTPOptions) *SMTPServer {
	t.Helper()
	checkGoroutines(t)
	opts.Logger = quietLogger()
	s, err := StartSMTP(opts)
	return started(t, s, err)
}

func dialSMTP(t *testing.T, addr, helo string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello(helo); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSMTPSendMail(t *testing.T) {
	const data = "From: a@example.org\r\nSubject: hi\r\n\r\nline one\r\n.dotted line\r\n\r\nlast\r\n"
	tests := []struct {
		name     string
		auth     sasl.Client
		wantAuth string
		authErr  bool
	}{
		{name: "anonymous"},
		{name: "plain", auth: sasl.NewPlainClient("", "alice", "secret"), wantAuth: "alice"},
		{name: "plain identity", auth: sasl.NewPlainClient("bob", "bob", "pass word"), wantAuth: "bob"},
		{name: "bad password", auth: sasl.NewPlainClient("", "alice", "nope"), authErr: true},
		{name: "unknown user", auth: sasl.NewPlainClient("", "carol", "secret"), authErr: true},
		{name: "foreign identity", auth: sasl.NewPlainClient("bob", "alice", "secret"), authErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSMTP(t, SMTPOptions{Users: testUsers, Domain: "mx.test"})
			c := dialSMTP(t, s.Addr, "client.test")
			if tt.auth != nil {
				err := c.Auth(tt.auth)
				if (err != nil) != tt.authErr {
					t.Fatalf("Auth error = %v, want error %v", err, tt.authErr)
				}
			}
			to := []string{"x@example.net", "y@example.net"}
			if err := c.SendMail("a@example.org", to, bytes.NewReader([]byte(data))); err != nil {
				t.Fatal(err)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			want := Message{From: "a@example.org", To: to, Data: []byte(data), AuthUser: tt.wantAuth, Helo: "client.test"}
			checkMessages(t, s.Messages(), []Message{want})
		})
	}
}

func checkMessages(t *testing.T, got, want []Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("recorded %d messages, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.From != w.From || !slices.Equal(g.To, w.To) || g.AuthUser != w.AuthUser || g.Helo != w.Helo {
			t.Errorf("message %d = %+v, want %+v", i, g, w)
		}
		if !bytes.Equal(g.Data, w.Data) {
			t.Errorf("message %d data = %q, want %q", i, g.Data, w.Data)
		}
	}
}

// TestSMTPTwoTransactions checks that a second transaction on the same
// connection starts fresh and keeps the authenticated user.
func TestSMTPTwoTransactions(t *testing.T) {
	s := startSMTP(t, SMTPOptions{Users: testUsers})
	c := dialSMTP(t, s.Addr, "first.test")
	if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@x.test", []string{"b@x.test"}, bytes.NewReader([]byte("one\r\n"))); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("c@x.test", []string{"d@x.test"}, bytes.NewReader([]byte("two\r\n"))); err != nil {
		t.Fatal(err)
	}
	checkMessages(t, s.Messages(), []Message{
		{From: "a@x.test", To: []string{"b@x.test"}, Data: []byte("one\r\n"), AuthUser: "alice", Helo: "first.test"},
		{From: "c@x.test", To: []string{"d@x.test"}, Data: []byte("two\r\n"), AuthUser: "alice", Helo: "first.test"},
	})
}

// TestSMTPExtensions pins what EHLO advertises: AUTH PLAIN, and no XCLIENT
// (go-smtp v0.25.1 has no server side for it).
func TestSMTPExtensions(t *testing.T) {
	s := startSMTP(t, SMTPOptions{Users: testUsers})
	c := dialSMTP(t, s.Addr, "client.test")
	if !c.SupportsAuth("PLAIN") {
		t.Errorf("AUTH PLAIN not advertised")
	}
	if ok, _ := c.Extension("XCLIENT"); ok {
		t.Errorf("XCLIENT advertised, but the server cannot record it")
	}
}

func TestSMTPCloseWithClients(t *testing.T) {
	checkGoroutines(t)
	s, err := StartSMTP(SMTPOptions{Users: testUsers, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c := dialSMTP(t, s.Addr, "client.test")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err == nil {
		t.Errorf("NOOP succeeded after Close")
	}
	if err := s.Close(); err == nil {
		t.Errorf("second Close succeeded")
	}
}

func TestSMTPLogins(t *testing.T) {
	s := startSMTP(t, SMTPOptions{Users: testUsers})
	c := dialSMTP(t, s.Addr, "client.test")
	if err := c.Auth(sasl.NewPlainClient("", "alice", "nope")); err == nil {
		t.Fatal("AUTH with a bad password succeeded")
	}
	if err := c.Auth(sasl.NewPlainClient("", "bob", "pass word")); err != nil {
		t.Fatal(err)
	}
	want := []Login{{"alice", "AUTH PLAIN", false}, {"bob", "AUTH PLAIN", true}}
	if got := s.Logins(); !slices.Equal(got, want) {
		t.Errorf("Logins() = %v, want %v", got, want)
	}
}

// Deliver sees each message before it is accepted, and its error is the
// client's reply.
func TestSMTPDeliver(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int // 0: accepted
		wantText string
	}{
		{name: "accepted"},
		{name: "plain error", err: errors.New("mailbox full"), wantCode: 554, wantText: "mailbox full"},
		{name: "smtp error", err: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "over quota"}, wantCode: 452, wantText: "over quota"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var delivered []Message
			s := startSMTP(t, SMTPOptions{Deliver: func(m Message) error {
				delivered = append(delivered, m)
				return tt.err
			}})
			c := dialSMTP(t, s.Addr, "client.test")
			err := c.SendMail("a@x.test", []string{"b@x.test"}, bytes.NewReader([]byte("body\r\n")))
			want := Message{From: "a@x.test", To: []string{"b@x.test"}, Data: []byte("body\r\n"), Helo: "client.test"}
			checkMessages(t, delivered, []Message{want})
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatal(err)
				}
				checkMessages(t, s.Messages(), []Message{want})
				return
			}
			var serr *smtp.SMTPError
			if !errors.As(err, &serr) || serr.Code != tt.wantCode || !strings.Contains(serr.Message, tt.wantText) {
				t.Fatalf("SendMail error %v, want %d and %q", err, tt.wantCode, tt.wantText)
			}
			checkMessages(t, s.Messages(), nil)
		})
	}
}
