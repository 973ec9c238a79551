package mailtest_test

import (
	"context"
	"fmt"
	"log"
	"net/textproto"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	mpimap "github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/session"
)

// A program's Authenticator routes each user to their own backend; the test
// puts the proxy in front of two in-process IMAP servers and checks, with a
// real client, that each user lands on theirs.
func Example_routing() {
	alice, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "alice", Password: "a-secret"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "bob", Password: "b-secret"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	// The Authenticator under test: it checks nothing itself and lets the
	// backend refuse a bad password.
	route := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		switch req.User {
		case "alice":
			return &auth.Result{Backend: alice.Addr}, nil
		case "bob":
			return &auth.Result{Backend: bob.Addr}, nil
		}
		return &auth.Result{Error: "Unknown user"}, nil
	})
	p := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}},
		Server: &mpimap.Server{Config: session.Config{Auth: route}},
	}}}}
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	for _, login := range []struct{ user, password string }{{"bob", "b-secret"}, {"alice", "wrong"}, {"carol", "c-secret"}} {
		c, err := imapclient.DialInsecure(p.ServerAddrs(0)[0].String(), nil)
		if err != nil {
			log.Fatal(err)
		}
		err = c.Login(login.user, login.password).Wait()
		fmt.Printf("%s: %v\n", login.user, err)
		c.Close()
	}
	fmt.Println("alice's backend saw:", alice.Logins())
	fmt.Println("bob's backend saw:", bob.Logins())
	// Output:
	// bob: <nil>
	// alice: imap: NO [AUTHENTICATIONFAILED] Authentication failed
	// carol: imap: NO [AUTHENTICATIONFAILED] Unknown user
	// alice's backend saw: [{alice LOGIN false}]
	// bob's backend saw: [{bob LOGIN true}]
}

// The IMAP server holds the messages a test adds.
func ExampleIMAPServer_AddMessage() {
	s, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: "alice", Password: "secret"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.AddMessage("alice", []byte("Subject: Welcome\r\n\r\nHello.\r\n")); err != nil {
		log.Fatal(err)
	}

	c, err := imapclient.DialInsecure(s.Addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		log.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(msgs[0].Envelope.Subject)
	// Output: Welcome
}

// The SMTP server records the messages it accepts.
func ExampleSMTPServer_Messages() {
	s, err := mailtest.StartSMTP(mailtest.SMTPOptions{Users: []mailtest.User{{Name: "alice", Password: "secret"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	c, err := smtp.Dial(s.Addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); err != nil {
		log.Fatal(err)
	}
	msg := strings.NewReader("Subject: hi\r\n\r\nHello, Bob.\r\n")
	if err := c.SendMail("alice@example.org", []string{"bob@example.org"}, msg); err != nil {
		log.Fatal(err)
	}
	for _, m := range s.Messages() {
		fmt.Printf("from %s to %v, authenticated as %q: %q\n", m.From, m.To, m.AuthUser, m.Data)
	}
	// Output: from alice@example.org to [bob@example.org], authenticated as "alice": "Subject: hi\r\n\r\nHello, Bob.\r\n"
}

// The POP3 server serves the maildrop a test fills, and keeps what the
// client did not delete.
func ExamplePOP3Server_Mailbox() {
	s, err := mailtest.StartPOP3(mailtest.POP3Options{Users: []mailtest.User{{Name: "alice", Password: "secret"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for _, m := range []string{"Subject: one\n\n1\n", "Subject: two\n\n2\n"} {
		if err := s.AddMessage("alice", []byte(m)); err != nil {
			log.Fatal(err)
		}
	}
	// A client logs in, deletes message 1 and quits (here through
	// the net/textproto dialogue any POP3 client has).
	if err := pop3Delete(s.Addr, "alice", "secret", 1); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", s.Mailbox("alice"))
	fmt.Println(s.Logins())
	// Output:
	// ["Subject: two\r\n\r\n2\r\n"]
	// [{alice USER true}]
}

// pop3Delete logs in with USER and PASS, deletes message n and quits.
func pop3Delete(addr, user, password string, n int) error {
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, cmd := range []string{"", "USER " + user, "PASS " + password, fmt.Sprintf("DELE %d", n), "QUIT"} {
		if cmd != "" {
			if err := c.PrintfLine("%s", cmd); err != nil {
				return err
			}
		}
		line, err := c.ReadLine()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("%q: %s", cmd, line)
		}
	}
	return nil
}
