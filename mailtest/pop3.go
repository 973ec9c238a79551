package mailtest

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the POP3 server.
const (
	// pop3MaxLine is the longest command line accepted, CRLF included. RFC
	// 1939 allows 255 octets, too few for AUTH PLAIN with an initial response;
	// 512 is the response limit of RFC 2449.
	pop3MaxLine = 512
	// pop3MaxBad is the number of -ERR replies after which the connection
	// is closed.
	pop3MaxBad = 100
	// pop3DefaultIdle is the default autologout timer; RFC 1939 asks for at
	// least 10 minutes.
	pop3DefaultIdle = 10 * time.Minute
)

// POP3Server is a small in-memory POP3 server (RFC 1939 with the CAPA,
// RESP-CODES and SASL extensions of RFC 2449 and RFC 5034). It offers USER and
// PASS, APOP and AUTH PLAIN without TLS, and keeps one maildrop per user.
type POP3Server struct {
	// Addr is the host:port the server listens on.
	Addr string

	log       *slog.Logger
	ln        net.Listener
	logins    loginLog
	users     map[string]string // name -> password, immutable
	idle      atomic.Int64      // time.Duration
	lastStamp atomic.Int64
	wg        sync.WaitGroup // accept loop and connection handlers

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]struct{}
	drops   map[string]*maildrop
	nextUID int
}

// maildrop is the mail of one user. A session in the TRANSACTION state holds
// the lock.
type maildrop struct {
	msgs   []*pop3Message
	locked bool
}

// pop3Message is one stored message; it never changes once stored.
type pop3Message struct {
	uid  string
	data []byte // CRLF line endings, ends with CRLF unless empty
}

// POP3Options configures StartPOP3.
type POP3Options struct {
	// Users may log in with USER and PASS, APOP or AUTH PLAIN; each has an
	// empty maildrop.
	Users []User
	// Logger receives the server's error logs, and its logins at debug
	// level; nil means slog.Default().
	Logger *slog.Logger
}

// StartPOP3 starts a POP3 server on a free loopback port.
func StartPOP3(opts POP3Options) (*POP3Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mailtest: pop3 listen: %w", err)
	}
	s := newPOP3Server(opts)
	s.ln = ln
	s.Addr = ln.Addr().String()
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// newPOP3Server builds the server state without a listener.
func newPOP3Server(opts POP3Options) *POP3Server {
	s := &POP3Server{
		log:   orDefault(opts.Logger),
		users: make(map[string]string, len(opts.Users)),
		conns: make(map[net.Conn]struct{}),
		drops: make(map[string]*maildrop, len(opts.Users)),
	}
	for _, u := range opts.Users {
		s.users[u.Name] = u.Password
		s.drops[u.Name] = &maildrop{}
	}
	s.idle.Store(int64(pop3DefaultIdle))
	return s
}

// SetIdleTimeout sets the autologout timer: a connection that sends no
// command for d is closed. It applies from the next command read; d <= 0
// restores the default of 10 minutes.
func (s *POP3Server) SetIdleTimeout(d time.Duration) {
	if d <= 0 {
		d = pop3DefaultIdle
	}
	s.idle.Store(int64(d))
}

// AddMessage appends msg, a whole RFC 5322 message, to the maildrop of
// user. Line endings are stored as CRLF and a final CRLF is added if
// missing. Sessions already in the TRANSACTION state do not see the new
// message.
func (s *POP3Server) AddMessage(user string, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops[user]
	if d == nil {
		return fmt.Errorf("mailtest: pop3: no user %q", user)
	}
	s.nextUID++
	d.msgs = append(d.msgs, &pop3Message{uid: fmt.Sprintf("mailtest-%d", s.nextUID), data: normalizeCRLF(msg)})
	return nil
}

// Mailbox returns a copy of the messages in the maildrop of user, as stored
// by AddMessage and without those deleted by a finished session.
func (s *POP3Server) Mailbox(user string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	if d := s.drops[user]; d != nil {
		for _, m := range d.msgs {
			out = append(out, bytes.Clone(m.data))
		}
	}
	return out
}

// Logins returns the logins the server has answered, oldest first.
func (s *POP3Server) Logins() []Login {
	return s.logins.list()
}

// lock takes the maildrop of user for a session and returns its messages.
func (s *POP3Server) lock(user string) ([]*pop3Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops[user] // user is known: the password was checked
	if d.locked {
		return nil, false
	}
	d.locked = true
	return append([]*pop3Message(nil), d.msgs...), true
}

// unlock releases the maildrop of user after removing the messages in del.
func (s *POP3Server) unlock(user string, del map[*pop3Message]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops[user]
	kept := d.msgs[:0]
	for _, m := range d.msgs {
		if !del[m] {
			kept = append(kept, m)
		}
	}
	clear(d.msgs[len(kept):])
	d.msgs = kept
	d.locked = false
}

// checkPassword reports whether password is the password of user.
func (s *POP3Server) checkPassword(user, password string) bool {
	want, ok := s.users[user]
	return ok && subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
}

// checkAPOP reports whether digest is the APOP digest of user for stamp.
func (s *POP3Server) checkAPOP(user, stamp, digest string) bool {
	password, ok := s.users[user]
	if !ok {
		return false
	}
	sum := md5.Sum([]byte(stamp + password))
	want := hex.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(digest))) == 1
}

// newStamp returns a fresh APOP timestamp; two connections never share one.
func (s *POP3Server) newStamp() string {
	now := time.Now().UnixNano()
	for {
		last := s.lastStamp.Load()
		n := max(now, last+1)
		if s.lastStamp.CompareAndSwap(last, n) {
			return fmt.Sprintf("<%d.%d@mailtest>", os.Getpid(), n)
		}
	}
}

func (s *POP3Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("mailtest: pop3 accept", "err", err)
			}
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		go s.handle(c)
	}
}

// track registers a new connection; it fails once the server is closed.
func (s *POP3Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *POP3Server) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	s.newSession(c).run()
}

// Close closes the listener and every connection, then waits for the
// connection handlers to finish. Sessions cut this way delete nothing.
func (s *POP3Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("mailtest: pop3 server already closed")
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// POP3 session states (RFC 1939 section 3).
const (
	stateAuthorization = 1 << iota
	stateTransaction
	stateDone
)

var errLineTooLong = errors.New("line too long")

// pop3Session is one client dialogue.
type pop3Session struct {
	srv   *POP3Server
	rw    io.ReadWriter
	r     *bufio.Reader
	w     *bufio.Writer
	stamp string
	state int
	bad   int

	userArg string // name given by USER, waiting for PASS
	user    string // authenticated user
	locked  bool   // the maildrop of user is held by this session
	msgs    []*pop3Message
	deleted map[*pop3Message]bool
}

func (s *POP3Server) newSession(rw io.ReadWriter) *pop3Session {
	return &pop3Session{
		srv:     s,
		rw:      rw,
		r:       bufio.NewReaderSize(rw, pop3MaxLine),
		w:       bufio.NewWriter(rw),
		stamp:   s.newStamp(),
		state:   stateAuthorization,
		deleted: make(map[*pop3Message]bool),
	}
}

// run greets the client and serves commands until QUIT, an I/O error, the
// idle timeout or too many bad commands.
func (ss *pop3Session) run() {
	defer func() {
		if ss.locked { // no QUIT in TRANSACTION: nothing is deleted
			ss.srv.unlock(ss.user, nil)
		}
	}()
	ss.ok("POP3 ready " + ss.stamp)
	for ss.flush() == nil && ss.state != stateDone {
		line, err := ss.readLine()
		switch {
		case errors.Is(err, errLineTooLong):
			ss.fail("line too long")
		case isTimeout(err):
			ss.fail("idle timeout, closing connection")
			ss.state = stateDone
		case err != nil:
			return
		default:
			ss.dispatch(line)
		}
		if ss.bad >= pop3MaxBad && ss.state != stateDone {
			ss.fail("too many bad commands, closing connection")
			ss.state = stateDone
		}
	}
}

// deadliner is the part of net.Conn that sets timeouts.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// flush sends the buffered replies, giving the client the idle timeout to
// read them.
func (ss *pop3Session) flush() error {
	if d, ok := ss.rw.(deadliner); ok {
		d.SetWriteDeadline(time.Now().Add(time.Duration(ss.srv.idle.Load())))
	}
	return ss.w.Flush()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readLine reads one line without its line ending. A line longer than
// pop3MaxLine is consumed and reported as errLineTooLong.
func (ss *pop3Session) readLine() (string, error) {
	if d, ok := ss.rw.(deadliner); ok {
		d.SetReadDeadline(time.Now().Add(time.Duration(ss.srv.idle.Load())))
	}
	line, err := ss.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = ss.r.ReadSlice('\n')
		}
		if err == nil {
			err = errLineTooLong
		}
		return "", err
	}
	if err != nil {
		return "", err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return string(bytes.TrimSuffix(line, []byte("\r"))), nil
}

// parsePOP3Command splits a command line into its upper-cased keyword and
// the rest of the line. Keywords are three or four ASCII letters.
func parsePOP3Command(line string) (name, arg string, err error) {
	name, arg, _ = strings.Cut(line, " ")
	if len(name) < 3 || len(name) > 4 {
		return "", "", errors.New("unknown command")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i] | 0x20; c < 'a' || c > 'z' {
			return "", "", errors.New("unknown command")
		}
	}
	return strings.ToUpper(name), arg, nil
}

// pop3Command is a command handler and the states it is valid in.
type pop3Command struct {
	states int
	run    func(ss *pop3Session, arg string)
}

var pop3Commands = map[string]pop3Command{
	"CAPA": {stateAuthorization | stateTransaction, (*pop3Session).capa},
	"QUIT": {stateAuthorization | stateTransaction, (*pop3Session).quit},
	"USER": {stateAuthorization, (*pop3Session).userCmd},
	"PASS": {stateAuthorization, (*pop3Session).pass},
	"APOP": {stateAuthorization, (*pop3Session).apop},
	"AUTH": {stateAuthorization, (*pop3Session).auth},
	"STAT": {stateTransaction, (*pop3Session).stat},
	"LIST": {stateTransaction, (*pop3Session).list},
	"RETR": {stateTransaction, (*pop3Session).retr},
	"TOP":  {stateTransaction, (*pop3Session).top},
	"UIDL": {stateTransaction, (*pop3Session).uidl},
	"DELE": {stateTransaction, (*pop3Session).dele},
	"RSET": {stateTransaction, (*pop3Session).rset},
	"NOOP": {stateTransaction, (*pop3Session).noop},
}

func (ss *pop3Session) dispatch(line string) {
	name, arg, err := parsePOP3Command(line)
	if err != nil {
		ss.fail(err.Error())
		return
	}
	cmd, ok := pop3Commands[name]
	switch {
	case !ok:
		ss.fail("unknown command")
	case cmd.states&ss.state == 0:
		ss.fail("command not valid in this state")
	default:
		cmd.run(ss, arg)
	}
}

// ok writes a positive status line.
func (ss *pop3Session) ok(text string) {
	if text != "" {
		text = " " + text
	}
	ss.w.WriteString("+OK" + text + "\r\n")
}

// fail writes a negative status line and counts it as a bad command.
func (ss *pop3Session) fail(text string) {
	ss.bad++
	ss.w.WriteString("-ERR " + text + "\r\n")
}

// multiline writes lines byte-stuffed and ends them with ".".
func (ss *pop3Session) multiline(lines [][]byte) {
	for _, l := range lines {
		if len(l) > 0 && l[0] == '.' {
			ss.w.WriteByte('.')
		}
		ss.w.Write(l)
		ss.w.WriteString("\r\n")
	}
	ss.w.WriteString(".\r\n")
}

func (ss *pop3Session) capa(string) {
	ss.ok("capability list follows")
	ss.multiline([][]byte{
		[]byte("TOP"), []byte("USER"), []byte("UIDL"), []byte("SASL PLAIN"),
		[]byte("RESP-CODES"), []byte("AUTH-RESP-CODE"),
	})
}

func (ss *pop3Session) quit(string) {
	if ss.locked {
		ss.srv.unlock(ss.user, ss.deleted)
		ss.locked = false
	}
	ss.state = stateDone
	ss.ok("bye")
}

func (ss *pop3Session) userCmd(arg string) {
	if arg == "" || strings.ContainsRune(arg, ' ') {
		ss.fail("usage: USER name")
		return
	}
	ss.userArg = arg
	ss.ok("send PASS")
}

func (ss *pop3Session) pass(arg string) {
	user := ss.userArg
	ss.userArg = ""
	if user == "" {
		ss.fail("USER first")
		return
	}
	ss.login(user, ss.srv.checkPassword(user, arg), "USER")
}

func (ss *pop3Session) apop(arg string) {
	f := strings.Fields(arg)
	if len(f) != 2 {
		ss.fail("usage: APOP name digest")
		return
	}
	ss.login(f[0], ss.srv.checkAPOP(f[0], ss.stamp, f[1]), "APOP")
}

// auth runs AUTH PLAIN (RFC 5034), with or without an initial response.
func (ss *pop3Session) auth(arg string) {
	f := strings.Fields(arg)
	switch {
	case len(f) == 0 || len(f) > 2:
		ss.fail("usage: AUTH mechanism [initial-response]")
		return
	case !strings.EqualFold(f[0], "PLAIN"):
		ss.fail("unsupported SASL mechanism")
		return
	}
	resp, ok := ss.saslResponse(f[1:])
	if !ok {
		return
	}
	user, password, ok := parsePlain(resp)
	if !ok {
		ss.fail("[AUTH] malformed PLAIN response")
		return
	}
	ss.login(user, ss.srv.checkPassword(user, password), "AUTH PLAIN")
}

// saslResponse returns the decoded client response: the initial response if
// given, else the line sent after an empty "+ " challenge. It writes the
// error reply itself when it fails.
func (ss *pop3Session) saslResponse(initial []string) ([]byte, bool) {
	var text string
	if len(initial) == 1 {
		text = initial[0]
	} else {
		ss.w.WriteString("+ \r\n")
		if ss.flush() != nil {
			return nil, false
		}
		line, err := ss.readLine()
		switch {
		case errors.Is(err, errLineTooLong):
			ss.fail("line too long")
			return nil, false
		case err != nil:
			ss.state = stateDone
			return nil, false
		case line == "*":
			ss.fail("authentication cancelled")
			return nil, false
		}
		text = line
	}
	if text == "=" {
		return []byte{}, true
	}
	resp, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		ss.fail("invalid base64")
		return nil, false
	}
	return resp, true
}

// parsePlain splits a SASL PLAIN response (RFC 4616). An authorization
// identity other than the user is refused.
func parsePlain(resp []byte) (user, password string, ok bool) {
	parts := strings.Split(string(resp), "\x00")
	if len(parts) != 3 || parts[1] == "" || (parts[0] != "" && parts[0] != parts[1]) {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// login enters the TRANSACTION state for user when the credentials were
// good and the maildrop is free.
func (ss *pop3Session) login(user string, good bool, method string) {
	if !good {
		ss.srv.logins.add(user, method, false)
		ss.srv.log.Debug("mailtest: pop3 login failed", "user", user, "method", method)
		ss.fail("[AUTH] invalid credentials")
		return
	}
	msgs, ok := ss.srv.lock(user)
	ss.srv.logins.add(user, method, ok)
	if !ok {
		ss.fail("[IN-USE] maildrop already locked")
		return
	}
	ss.user, ss.msgs, ss.state, ss.locked = user, msgs, stateTransaction, true
	ss.srv.log.Debug("mailtest: pop3 login", "user", user, "method", method)
	n, size := ss.totals()
	ss.ok(fmt.Sprintf("maildrop has %d messages (%d octets)", n, size))
}

// totals counts the messages not marked as deleted and their size.
func (ss *pop3Session) totals() (n, size int) {
	for _, m := range ss.msgs {
		if !ss.deleted[m] {
			n++
			size += len(m.data)
		}
	}
	return n, size
}

// message resolves a message-number argument to the message and its
// number; it writes the error reply itself when it fails.
func (ss *pop3Session) message(arg string) (*pop3Message, int, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(arg), 10, 31)
	if err != nil || n == 0 {
		ss.fail("invalid message number")
		return nil, 0, false
	}
	if n > uint64(len(ss.msgs)) || ss.deleted[ss.msgs[n-1]] {
		ss.fail("no such message")
		return nil, 0, false
	}
	return ss.msgs[n-1], int(n), true
}

func (ss *pop3Session) stat(string) {
	n, size := ss.totals()
	ss.ok(fmt.Sprintf("%d %d", n, size))
}

// scanListing serves LIST and UIDL: one message if arg names one, else
// every message not deleted.
func (ss *pop3Session) scanListing(arg string, field func(*pop3Message) string) {
	if arg != "" {
		if m, n, ok := ss.message(arg); ok {
			ss.ok(strconv.Itoa(n) + " " + field(m))
		}
		return
	}
	ss.ok("listing follows")
	var lines [][]byte
	for i, m := range ss.msgs {
		if !ss.deleted[m] {
			lines = append(lines, fmt.Appendf(nil, "%d %s", i+1, field(m)))
		}
	}
	ss.multiline(lines)
}

func (ss *pop3Session) list(arg string) {
	ss.scanListing(arg, func(m *pop3Message) string { return strconv.Itoa(len(m.data)) })
}

func (ss *pop3Session) uidl(arg string) {
	ss.scanListing(arg, func(m *pop3Message) string { return m.uid })
}

func (ss *pop3Session) retr(arg string) {
	m, _, ok := ss.message(arg)
	if !ok {
		return
	}
	ss.ok(fmt.Sprintf("%d octets", len(m.data)))
	ss.multiline(splitLines(m.data))
}

func (ss *pop3Session) top(arg string) {
	f := strings.Fields(arg)
	if len(f) != 2 {
		ss.fail("usage: TOP msg lines")
		return
	}
	n, err := strconv.ParseUint(f[1], 10, 31)
	if err != nil {
		ss.fail("invalid line count")
		return
	}
	m, _, ok := ss.message(f[0])
	if !ok {
		return
	}
	ss.ok("top of message follows")
	ss.multiline(topLines(splitLines(m.data), int(n)))
}

// topLines returns the header, the blank line after it and at most n lines
// of the body.
func topLines(lines [][]byte, n int) [][]byte {
	for i, l := range lines {
		if len(l) == 0 {
			return lines[:i+1+min(n, len(lines)-i-1)]
		}
	}
	return lines // no body
}

func (ss *pop3Session) dele(arg string) {
	if m, _, ok := ss.message(arg); ok {
		ss.deleted[m] = true
		ss.ok("message deleted")
	}
}

func (ss *pop3Session) rset(string) {
	clear(ss.deleted)
	n, size := ss.totals()
	ss.ok(fmt.Sprintf("maildrop has %d messages (%d octets)", n, size))
}

func (ss *pop3Session) noop(string) { ss.ok("") }

// normalizeCRLF returns a copy of msg with every line ending as CRLF, the
// last one included.
func normalizeCRLF(msg []byte) []byte {
	var b bytes.Buffer
	for l := range bytes.Lines(msg) {
		l = bytes.TrimSuffix(l, []byte("\n"))
		b.Write(bytes.TrimSuffix(l, []byte("\r")))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// splitLines splits CRLF-terminated data into lines without their endings.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	for l := range bytes.Lines(data) {
		lines = append(lines, bytes.TrimSuffix(l, []byte("\r\n")))
	}
	return lines
}
