package mailtest

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// IMAPServer is an in-memory IMAP server built on go-imap's imapserver and
// imapmemserver. Every user has an INBOX. LOGIN and AUTHENTICATE PLAIN work
// without TLS, and both IMAP4rev1 and IMAP4rev2 are advertised.
type IMAPServer struct {
	// Addr is the host:port the server listens on.
	Addr string

	srv       *imapserver.Server
	ln        *trackingListener
	serveDone chan struct{}
	sessions  sync.WaitGroup // one per accepted connection, done when its session closes
	closeOnce sync.Once
}

// StartIMAP starts an IMAP server on a free loopback port with the given
// users. A nil logger means slog.Default().
func StartIMAP(users []User, logger *slog.Logger) (*IMAPServer, error) {
	mem, err := newIMAPMemServer(users)
	if err != nil {
		return nil, err
	}
	ln, err := listenLocal()
	if err != nil {
		return nil, fmt.Errorf("mailtest: imap listen: %w", err)
	}
	s := &IMAPServer{Addr: ln.Addr().String(), ln: ln, serveDone: make(chan struct{})}
	ln.onAccept = func() { s.sessions.Add(1) }
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return s.newSession(mem), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		Logger:       printfLogger{log: orDefault(logger), proto: "imap"},
		InsecureAuth: true,
	})
	go s.serve()
	return s, nil
}

// newIMAPMemServer builds the mailbox store with an INBOX for every user.
func newIMAPMemServer(users []User) (*imapmemserver.Server, error) {
	mem := imapmemserver.New()
	for _, u := range users {
		mu := imapmemserver.NewUser(u.Name, u.Password)
		if err := mu.Create("INBOX", nil); err != nil {
			return nil, fmt.Errorf("mailtest: imap create INBOX for %q: %w", u.Name, err)
		}
		mem.AddUser(mu)
	}
	return mem, nil
}

func (s *IMAPServer) serve() {
	defer close(s.serveDone)
	s.srv.Serve(s.ln) // returns nil once the listener is closed
}

// newSession wraps a session of the memory server so that the end of the
// connection is counted in s.sessions.
func (s *IMAPServer) newSession(mem *imapmemserver.Server) imapserver.Session {
	// imapmemserver sessions implement IMAP4rev2 (NAMESPACE, MOVE).
	return &trackedIMAPSession{
		SessionIMAP4rev2: mem.NewSession().(imapserver.SessionIMAP4rev2),
		done:             s.sessions.Done,
	}
}

// trackedIMAPSession reports its Close, the last step of a connection handler.
type trackedIMAPSession struct {
	imapserver.SessionIMAP4rev2
	done func()
}

// Close releases the session.
func (t *trackedIMAPSession) Close() error {
	defer t.done()
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
