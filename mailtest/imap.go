package mailtest

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// IMAPOptions configures StartIMAP.
type IMAPOptions struct {
	// Users may log in with LOGIN or AUTHENTICATE PLAIN; each has an empty
	// INBOX.
	Users []User
	// Logger receives the server's error logs; nil means slog.Default().
	Logger *slog.Logger
}

// IMAPServer is an in-memory IMAP server built on go-imap's imapserver and
// imapmemserver. Every user has an INBOX. LOGIN and AUTHENTICATE PLAIN work
// without TLS, and both IMAP4rev1 and IMAP4rev2 are advertised.
type IMAPServer struct {
	// Addr is the host:port the server listens on.
	Addr string

	srv       *imapserver.Server
	users     map[string]*imapmemserver.User
	ln        *trackingListener
	logins    loginLog
	serveDone chan struct{}
	sessions  sync.WaitGroup // one per accepted connection, done when its session closes
	closeOnce sync.Once
}

// StartIMAP starts an IMAP server on a free loopback port.
func StartIMAP(opts IMAPOptions) (*IMAPServer, error) {
	mem := imapmemserver.New()
	users := make(map[string]*imapmemserver.User, len(opts.Users))
	for _, u := range opts.Users {
		mu := imapmemserver.NewUser(u.Name, u.Password)
		if err := mu.Create("INBOX", nil); err != nil {
			return nil, fmt.Errorf("mailtest: imap create INBOX for %q: %w", u.Name, err)
		}
		mem.AddUser(mu)
		users[u.Name] = mu
	}
	ln, err := listenLocal()
	if err != nil {
		return nil, fmt.Errorf("mailtest: imap listen: %w", err)
	}
	s := &IMAPServer{Addr: ln.Addr().String(), users: users, ln: ln, serveDone: make(chan struct{})}
	ln.onAccept = func() { s.sessions.Add(1) }
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return s.newSession(mem), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		Logger:       printfLogger{log: orDefault(opts.Logger), proto: "imap"},
		InsecureAuth: true,
	})
	go s.serve()
	return s, nil
}

// AddMessage appends msg, a whole RFC 5322 message, to the INBOX of user.
// Sessions see it as a new message, as if another client had appended it.
func (s *IMAPServer) AddMessage(user string, msg []byte) error {
	u, ok := s.users[user]
	if !ok {
		return fmt.Errorf("mailtest: imap: no user %q", user)
	}
	if _, err := u.Append("INBOX", bytes.NewReader(msg), &imap.AppendOptions{}); err != nil {
		return fmt.Errorf("mailtest: imap append for %q: %w", user, err)
	}
	return nil
}

// Logins returns the logins the server has answered, oldest first.
func (s *IMAPServer) Logins() []Login {
	return s.logins.list()
}

func (s *IMAPServer) serve() {
	defer close(s.serveDone)
	s.srv.Serve(s.ln) // returns nil once the listener is closed
}

// newSession wraps a session of the memory server so that its logins are
// recorded and the end of the connection is counted in s.sessions.
func (s *IMAPServer) newSession(mem *imapmemserver.Server) imapserver.Session {
	// imapmemserver sessions implement IMAP4rev2 (NAMESPACE, MOVE).
	return &imapSession{
		SessionIMAP4rev2: mem.NewSession().(imapserver.SessionIMAP4rev2),
		srv:              s,
	}
}

// imapSession records its logins and reports its Close, the last step of a
// connection handler.
type imapSession struct {
	imapserver.SessionIMAP4rev2
	srv *IMAPServer
}

var _ imapserver.SessionSASL = (*imapSession)(nil)

// Login checks the credentials given with LOGIN.
func (t *imapSession) Login(user, password string) error {
	return t.login(user, password, "LOGIN")
}

func (t *imapSession) login(user, password, method string) error {
	err := t.SessionIMAP4rev2.Login(user, password)
	t.srv.logins.add(user, method, err == nil)
	return err
}

// AuthenticateMechanisms lists the SASL mechanisms of AUTHENTICATE.
func (t *imapSession) AuthenticateMechanisms() []string {
	return []string{sasl.Plain}
}

// Authenticate starts AUTHENTICATE PLAIN.
func (t *imapSession) Authenticate(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
	}
	return sasl.NewPlainServer(func(identity, user, password string) error {
		if identity != "" && identity != user {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed, Text: "SASL identity not supported"}
		}
		return t.login(user, password, "AUTHENTICATE PLAIN")
	}), nil
}

// Close releases the session.
func (t *imapSession) Close() error {
	defer t.srv.sessions.Done()
	return t.SessionIMAP4rev2.Close()
}

// Close stops the listener, closes every connection and waits for the
// connection handlers to finish.
func (s *IMAPServer) Close() error {
	err := errors.New("mailtest: imap server already closed")
	s.closeOnce.Do(func() {
		err = s.srv.Close()
		s.ln.Close() // in case Serve had not registered the listener yet
		<-s.serveDone
		s.ln.closeConns()
		s.sessions.Wait()
	})
	return err
}
