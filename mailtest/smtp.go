package mailtest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTPOptions configures StartSMTP.
type SMTPOptions struct {
	// Users may authenticate with AUTH PLAIN. Mail is accepted without
	// authentication too.
	Users []User
	// Domain is the name in the greeting; "localhost" if empty.
	Domain string
	// MaxMessageBytes limits the size of a message; 0 means 32 MiB.
	MaxMessageBytes int64
	// Deliver, if not nil, is called with every message the server is
	// about to accept, from the connection's goroutine: a demo delivers
	// it to a mailbox, a test can refuse it. An error refuses the message:
	// the client gets the error's text in a 554 reply, or the error's own
	// code when it is a *smtp.SMTPError of github.com/emersion/go-smtp.
	// A refused message is not recorded in Messages.
	Deliver func(Message) error
	// Logger receives the server's error logs; nil means slog.Default().
	Logger *slog.Logger
}

// Message is one mail transaction received by an SMTPServer.
type Message struct {
	// From is the address of MAIL FROM ("" for a bounce).
	From string
	// To are the addresses of RCPT TO, in order.
	To []string
	// Data is the message as received after DATA, with CRLF line endings
	// and the terminating "." line removed.
	Data []byte
	// AuthUser is the user that authenticated on the connection, or "".
	AuthUser string
	// Helo is the name the client gave in its last HELO or EHLO.
	Helo string
}

// SMTPServer is an SMTP server built on go-smtp that records every message
// it accepts. It offers AUTH PLAIN without TLS, and accepts mail without
// authentication too, for any sender and recipient. It does not offer
// XCLIENT.
type SMTPServer struct {
	// Addr is the host:port the server listens on.
	Addr string

	srv       *smtp.Server
	ln        *trackingListener
	users     map[string]string
	deliver   func(Message) error
	logins    loginLog
	serveDone chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	messages []Message
}

// StartSMTP starts an SMTP server on a free loopback port.
func StartSMTP(opts SMTPOptions) (*SMTPServer, error) {
	ln, err := listenLocal()
	if err != nil {
		return nil, fmt.Errorf("mailtest: smtp listen: %w", err)
	}
	s := &SMTPServer{
		Addr:      ln.Addr().String(),
		ln:        ln,
		users:     make(map[string]string, len(opts.Users)),
		deliver:   opts.Deliver,
		serveDone: make(chan struct{}),
	}
	for _, u := range opts.Users {
		s.users[u.Name] = u.Password
	}
	s.srv = newSMTPServer(opts, smtp.BackendFunc(s.newSession))
	go s.serve()
	return s, nil
}

// newSMTPServer fills in the go-smtp server from the options.
func newSMTPServer(opts SMTPOptions, be smtp.Backend) *smtp.Server {
	srv := smtp.NewServer(be)
	srv.Domain = opts.Domain
	if srv.Domain == "" {
		srv.Domain = "localhost"
	}
	srv.MaxMessageBytes = opts.MaxMessageBytes
	if srv.MaxMessageBytes == 0 {
		srv.MaxMessageBytes = 32 << 20
	}
	srv.MaxRecipients = 100
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = printfLogger{log: orDefault(opts.Logger), proto: "smtp"}
	return srv
}

func (s *SMTPServer) serve() {
	defer close(s.serveDone)
	s.srv.Serve(s.ln) // returns once the listener is closed
}

// Messages returns a copy of the messages received so far, oldest first.
func (s *SMTPServer) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = m.clone()
	}
	return out
}

// clone returns a copy of m that shares no memory with it.
func (m Message) clone() Message {
	m.To = slices.Clone(m.To)
	m.Data = bytes.Clone(m.Data)
	return m
}

// Logins returns the AUTH commands the server has answered, oldest first.
func (s *SMTPServer) Logins() []Login {
	return s.logins.list()
}

func (s *SMTPServer) record(m Message) {
	s.mu.Lock()
	s.messages = append(s.messages, m)
	s.mu.Unlock()
}

// Close stops the listener, closes every connection and waits for the
// connection handlers to finish.
func (s *SMTPServer) Close() error {
	err := errors.New("mailtest: smtp server already closed")
	s.closeOnce.Do(func() {
		err = s.ln.Close()
		<-s.serveDone // no connection is accepted after this
		s.ln.closeConns()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Shutdown closes the listener a second time and waits for the
		// handlers, which end now that their connections are closed.
		if serr := s.srv.Shutdown(ctx); errors.Is(serr, context.DeadlineExceeded) {
			err = fmt.Errorf("mailtest: smtp shutdown: %w", serr)
		}
	})
	return err
}

func (s *SMTPServer) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &smtpSession{srv: s, conn: c}, nil
}

// smtpSession records the transactions of one connection.
type smtpSession struct {
	srv      *SMTPServer
	conn     *smtp.Conn
	authUser string
	from     string
	to       []string
}

var _ smtp.AuthSession = (*smtpSession)(nil)

// AuthMechanisms lists the SASL mechanisms offered in EHLO.
func (ss *smtpSession) AuthMechanisms() []string {
	return []string{sasl.Plain}
}

// Auth starts a SASL exchange.
func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(ss.checkPlain), nil
}

func (ss *smtpSession) checkPlain(identity, username, password string) error {
	want, ok := ss.srv.users[username]
	good := ok && (identity == "" || identity == username) &&
		subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
	ss.srv.logins.add(username, "AUTH PLAIN", good)
	if !good {
		return smtp.ErrAuthFailed
	}
	ss.authUser = username
	return nil
}

// Mail starts a transaction.
func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

// Rcpt adds a recipient.
func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

// Data reads the message and records the transaction.
func (ss *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{
		From:     ss.from,
		To:       ss.to,
		Data:     data,
		AuthUser: ss.authUser,
		Helo:     ss.conn.Hostname(),
	}
	ss.Reset()
	if ss.srv.deliver != nil {
		if err := ss.srv.deliver(m.clone()); err != nil {
			return err
		}
	}
	ss.srv.record(m)
	return nil
}

// Reset drops the current transaction.
func (ss *smtpSession) Reset() {
	ss.from, ss.to = "", nil
}

// Logout ends the session.
func (ss *smtpSession) Logout() error { return nil }
