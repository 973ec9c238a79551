package smtp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// recorder is a strict SMTP backend with XCLIENT that records every byte
// each connection sends it. A command must end with CR LF (a bare LF is
// refused, as Postfix's smtpd_forbid_bare_newline refuses it), and only
// CR LF "." CR LF ends a message.
type recorder struct {
	Addr string

	mu    sync.Mutex
	conns []*recording
}

// recording is what one connection sent.
type recording struct {
	mu       sync.Mutex
	raw      []byte   // every byte, in order
	messages [][]byte // the content of each DATA, the final CR LF "." CR LF left out
	bareLF   int      // commands that ended with a bare LF
}

func (r *recording) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw = append(r.raw, p...)
	return len(p), nil
}

// snapshot returns a copy of what was recorded so far.
func (r *recording) snapshot() (raw []byte, messages [][]byte, bareLF int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.raw), slices.Clone(r.messages), r.bareLF
}

// maxMessage bounds a message the recorder reads.
const maxMessage = 1 << 20

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Addr = testutil.Accept(t, func(c net.Conn) {
		r := &recording{}
		rec.mu.Lock()
		rec.conns = append(rec.conns, r)
		rec.mu.Unlock()
		r.serve(c)
	}).Addr().String()
	return rec
}

// recordings returns the connections in the order they came.
func (rec *recorder) recordings() []*recording {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.conns)
}

func (r *recording) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	in := bufio.NewReader(io.TeeReader(c, r))
	reply := func(lines ...string) { io.WriteString(c, strings.Join(lines, "\r\n")+"\r\n") }
	reply("220 recorder.test ESMTP")
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		if !strings.HasSuffix(line, "\r\n") {
			r.mu.Lock()
			r.bareLF++
			r.mu.Unlock()
			reply("500 5.5.2 Bare LF")
			continue
		}
		verb, _, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply("250-recorder.test", "250-XCLIENT ADDR NAME HELO LOGIN", "250 8BITMIME")
		case "XCLIENT":
			reply("220 recorder.test ESMTP")
		case "AUTH":
			reply("235 2.7.0 Authenticated")
		case "DATA":
			reply("354 End data with <CR><LF>.<CR><LF>")
			msg, err := readMessage(in)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.messages = append(r.messages, msg)
			n := len(r.messages)
			r.mu.Unlock()
			reply(fmt.Sprintf("250 2.0.0 queued as %d", n))
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			reply("250 2.0.0 OK")
		}
	}
}

// readMessage reads a message up to CR LF "." CR LF, and nothing else, as
// its end; the CR LF before the "." is the message's.
func readMessage(r *bufio.Reader) ([]byte, error) {
	var msg []byte
	for len(msg) < maxMessage {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		msg = append(msg, b)
		if string(msg) == ".\r\n" {
			return nil, nil
		}
		if bytes.HasSuffix(msg, []byte("\r\n.\r\n")) {
			return msg[:len(msg)-3], nil
		}
	}
	return nil, errors.New("message too long")
}

// rawClient is a client for goroutines other than the test's: its errors
// are returned, not fatal.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(addr string) (*rawClient, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawClient{conn: conn, r: bufio.NewReader(conn)}, nil
}

// expect reads a reply and checks that its last line starts with want.
func (c *rawClient) expect(want string) error {
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("waiting for %q: %w", want, err)
		}
		if len(l) > 3 && l[3] == '-' {
			continue
		}
		if !strings.HasPrefix(l, want) {
			return fmt.Errorf("got %q, want %q", strings.TrimSpace(l), want)
		}
		return nil
	}
}

// A command line with a NUL or a bare CR is an invalid command, as nginx
// has a bare CR (500 5.5.1), and reaches neither the auth service nor the
// backend; a bare LF ends a command, as in nginx. The backend gets the
// MAIL and RCPT of such lines with CR LF, byte for byte what it would
// have got from CR LF lines.
func TestCommandLineBytes(t *testing.T) {
	rec := startRecorder(t)
	var mu sync.Mutex
	var reqs []auth.Request
	a := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		mu.Lock()
		reqs = append(reqs, *req)
		mu.Unlock()
		return &auth.Result{Backend: rec.Addr}, nil
	})
	addr := serve(t, &smtp.Server{AuthMethods: []string{"none"}, Config: session.Config{Auth: a, MaxErrors: 20}})
	testutil.Dial(t, "tcp", addr).Play([]testutil.Step{
		{"", "220 proxy.test"},
		{"NOOP\rRSET\r\n", "500 5.5.1 Invalid command"},
		{"NOOP\r\r\n", "500 5.5.1 Invalid command"},
		{"EHLO c\r.test\r\n", "500 5.5.1 Invalid command"},
		{"EHLO c\x00.test\r\n", "500 5.5.1 Invalid command"},
		{"\x00\r\n", "500 5.5.1 Invalid command"},
		{"MAIL FROM:<evil@x.test>\rRCPT TO:<victim@y.test>\r\n", "500 5.5.1 Invalid command"},
		{"MAIL FROM:<a\x00@x.test>\r\n", "500 5.5.1 Invalid command"},
		{"RCPT TO:<victim@y.test>\r\n", "503 5.5.1 Need MAIL before RCPT"}, // no MAIL was taken
		{"EHLO c.test\nNOOP\n", "250 proxy.test", "250 2.0.0 OK"},
		{"MAIL FROM:<a@x.test>\n", "250 2.1.0 OK"},
		{"RCPT TO:<b@y.test>\n", "250 2.0.0 OK"}, // the backend's
		{"QUIT\r\n", "221 2.0.0 Bye", "<closed>"},
	})
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) != 1 || reqs[0].SMTPHelo != "c.test" || reqs[0].SMTPFrom != "MAIL FROM:<a@x.test>" || !slices.Equal(reqs[0].SMTPTo, []string{"RCPT TO:<b@y.test>"}) {
		t.Errorf("the Authenticator was asked %+v", reqs)
	}
	conns := rec.recordings()
	if len(conns) != 1 {
		t.Fatalf("%d backend connections", len(conns))
	}
	raw, _, bareLF := conns[0].snapshot()
	want := "EHLO proxy.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE] HELO=c.test\r\nEHLO c.test\r\n" +
		"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nQUIT\r\n"
	if string(raw) != want || bareLF != 0 {
		t.Errorf("the backend got\n%q\nwant\n%q", raw, want)
	}
}

// smuggled is what a client hides behind a line end that is not CR LF
// inside a message: another transaction.
const smuggled = "MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n"

// smugglingMessage holds the smuggling sequences, each followed by another
// transaction, and no CR LF "." CR LF.
func smugglingMessage(t *testing.T) string {
	var b strings.Builder
	b.WriteString("Subject: smuggling\r\n\r\n")
	for _, seq := range []string{"\n.\n", "\r.\n", "\n.\r\n", "\r\n.\n", "\n.\r", "\r.\r\n", "\r\n.\r", "\r\n\x00.\r\n"} {
		b.WriteString("before" + seq + smuggled + "after\r\n")
	}
	msg := b.String()
	if strings.Contains(msg, "\r\n.\r\n") {
		t.Fatal("the message ends early")
	}
	return msg
}

// Smuggling sequences (a "." between line ends that are not both CR LF)
// inside a message reach the backend unchanged, byte for byte, however
// the client's writes cut them: after the login the proxy relays bytes and
// interprets none of them. The backend's replies are the only ones the
// client gets.
func TestSmugglingRelayedUnchanged(t *testing.T) {
	msg := smugglingMessage(t)
	envelope := "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
	tests := []struct {
		name string
		none bool // smtp_auth none: the envelope logs in, the rest is pipelined
		// writes cut the message before each line end, else it goes in one
		// write with the envelope.
		cut bool
	}{
		{"after AUTH, one write", false, false},
		{"after AUTH, cut at the line ends", false, true},
		{"smtp_auth none, pipelined", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := startRecorder(t)
			srv := &smtp.Server{Config: session.Config{Auth: table(rec.Addr)}}
			prelude := "EHLO proxy.test\r\nXCLIENT ADDR=127.0.0.1 LOGIN=alice NAME=[UNAVAILABLE] HELO=c.test\r\nEHLO c.test\r\n"
			if tt.none {
				srv.AuthMethods = []string{"none"}
				srv.Config.Auth = auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
					return &auth.Result{Backend: rec.Addr}, nil
				})
				prelude = "EHLO proxy.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE] HELO=c.test\r\nEHLO c.test\r\n"
			}
			c := testutil.Dial(t, "tcp", serve(t, srv))
			c.Exchange("", "220 proxy.test")
			relayed := envelope + msg + ".\r\nQUIT\r\n"
			if tt.none {
				c.Exchange("EHLO c.test\r\n"+relayed, "…250 ", "250 2.1.0 OK", "250 2.0.0 OK", "354 ", "250 2.0.0 queued as 1", "221 2.0.0 Bye", "<closed>")
				prelude += "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n"
				relayed = strings.TrimPrefix(relayed, "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n")
			} else {
				c.Exchange("EHLO c.test\r\n", "…250 ")
				c.Exchange("AUTH PLAIN "+testutil.B64("\x00alice\x00secret")+"\r\n", "235 2.0.0 OK")
				c.Exchange(envelope, "250 2.0.0 OK", "250 2.0.0 OK", "354 ")
				if tt.cut {
					for part := range strings.SplitAfterSeq(msg, ".") {
						c.Exchange(part)
						time.Sleep(time.Millisecond) // not a wait: the parts reach the relay in reads of their own
					}
				} else {
					c.Exchange(msg)
				}
				c.Exchange(".\r\nQUIT\r\n", "250 2.0.0 queued as 1", "221 2.0.0 Bye", "<closed>")
			}
			conns := rec.recordings()
			if len(conns) != 1 {
				t.Fatalf("%d backend connections", len(conns))
			}
			raw, messages, bareLF := conns[0].snapshot()
			if !bytes.Equal(raw, []byte(prelude+relayed)) {
				t.Errorf("the backend got\n%q\nwant\n%q", raw, prelude+relayed)
			}
			if len(messages) != 1 || string(messages[0]) != msg || bareLF != 0 {
				t.Errorf("the backend took %d messages (%d bare LF commands), want the one sent", len(messages), bareLF)
			}
		})
	}
}

// Before a login there is no message: DATA is refused, and a message's
// lines, smuggling sequences and hidden transactions included, are
// commands the proxy refuses one by one; nothing reaches the auth service
// or a backend.
func TestNoDataBeforeLogin(t *testing.T) {
	rec := startRecorder(t)
	var asked atomic.Int32
	a := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) (*auth.Result, error) {
		asked.Add(1)
		return table(rec.Addr).Authenticate(ctx, req)
	})
	c := testutil.Dial(t, "tcp", serve(t, &smtp.Server{Config: session.Config{Auth: a, MaxErrors: -1}}))
	c.Exchange("", "220 proxy.test")
	c.Exchange("EHLO c.test\r\n", "…250 ")
	sent := "DATA\r\n" + smugglingMessage(t) + ".\r\n"
	c.Exchange(sent)
	for i := range strings.Count(sent, "\n") {
		if l := c.Line(); !strings.HasPrefix(l, "5") {
			t.Fatalf("line %d of the message answered %q", i, l)
		}
	}
	c.Exchange("QUIT\r\n", "221 2.0.0 Bye", "<closed>")
	if n := asked.Load(); n != 0 {
		t.Errorf("the Authenticator was asked %d times", n)
	}
	if n := len(rec.recordings()); n != 0 {
		t.Errorf("%d backend connections", n)
	}
	// With smtp_auth none, DATA needs MAIL and RCPT, whose RCPT logs in.
	testutil.Dial(t, "tcp", serve(t, &smtp.Server{AuthMethods: []string{"none"}, Config: session.Config{Auth: a}})).Play([]testutil.Step{
		{"", "220"},
		{"DATA\r\n", "502 5.5.1 Command not available before authentication"},
		{"MAIL FROM:<a@x.test>\r\nDATA\r\n", "250 2.1.0 OK", "502 5.5.1 Command not available before authentication"},
	})
}

// oddEnvelope is what one session of TestAuthNoneSessionsShareNothing
// says: HELO, MAIL and RCPT lines, each with the session's token.
type oddEnvelope struct {
	token, helo, mail, rcpt string
	pipelined               bool
}

// newOddEnvelope makes the i-th session's envelope: odd but valid MAIL and RCPT lines: parameters, a null
// sender, spaces and quotes, UTF-8, text that looks like XCLIENT, and a
// padding of every length up to most of smtp_client_buffer, so that pooled
// buffers hold lines of other lengths from other sessions.
func newOddEnvelope(i int) oddEnvelope {
	tok := fmt.Sprintf("T%05dZ", i)
	pad := strings.Repeat("p", i*397%3500)
	e := oddEnvelope{token: tok, helo: "h." + tok + ".test", pipelined: i%2 == 1}
	switch i % 6 {
	case 0:
		e.mail = "MAIL FROM:<a." + tok + "@x.test> SIZE=1000 BODY=8BITMIME ENVID=" + pad
		e.rcpt = "RCPT TO:<r." + tok + "@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r." + tok + "+40y.test"
	case 1:
		e.mail = "MAIL FROM:<> ENVID=" + tok + " X-PAD=" + pad
		e.rcpt = "rcpt to:<postmaster>  X-" + tok
	case 2:
		e.mail = `mail from: <"odd  local ` + tok + `"@x.test> ` + pad
		e.rcpt = `RCPT TO: <"q ` + tok + `"@y.test>`
	case 3:
		e.mail = "MAIL FROM:<" + tok + "@x.test> AUTH=<> " + pad + "   "
		e.rcpt = "RCPT TO:<@relay.test:" + tok + "@y.test>"
	case 4:
		e.mail = "MAIL FROM:<ü." + tok + "@exämple.test> SMTPUTF8 " + pad
		e.rcpt = "RCPT TO:<ö." + tok + "@exämple.test>"
	case 5:
		e.mail = "MAIL FROM:<a@x.test> X=XCLIENT_ADDR=192.0.2.66_" + tok + " " + pad
		e.rcpt = "RCPT TO:<b@y.test> X=LOGIN=root_" + tok
	}
	return e
}

// run is the session's dialogue, up to QUIT, relayed to the backend.
func (e oddEnvelope) run(addr string) error {
	c, err := dialRaw(addr)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if err := c.expect("220 "); err != nil {
		return err
	}
	steps := [][2]string{{"EHLO " + e.helo, "250 "}, {e.mail, "250 2.1.0 OK"}, {e.rcpt, "250 2.0.0 OK"}, {"QUIT", "221 "}}
	if e.pipelined {
		var all string
		for _, s := range steps[:3] {
			all += s[0] + "\r\n"
		}
		if _, err := io.WriteString(c.conn, all); err != nil {
			return err
		}
	}
	for _, s := range steps {
		if !e.pipelined || s[0] == "QUIT" {
			if _, err := io.WriteString(c.conn, s[0]+"\r\n"); err != nil {
				return err
			}
		}
		if err := c.expect(s[1]); err != nil {
			return fmt.Errorf("%.40q: %w", s[0], err)
		}
	}
	return nil
}

// tokens finds the session tokens in s.
var tokens = regexp.MustCompile(`T\d{5}Z`)

// The class of CVE-2025-53859: with smtp_auth none, no memory of one
// session reaches another. Many sessions at once, with odd MAIL and RCPT
// lines of every length through pooled buffers and the auth service's
// kept-alive connections: what the auth service hears of a session
// (Auth-SMTP-Helo, -From, -To, and every other header) and what its
// backend connection carries are its own lines exactly, with no token of
// another session, and no user or password.
func TestAuthNoneSessionsShareNothing(t *testing.T) {
	sessions, workers := 300, 32
	if !testing.Short() {
		sessions, workers = 3000, 64
	}
	rec := startRecorder(t)
	var mu sync.Mutex
	var heard []http.Header
	addr := serveAuthNone(t, rec.Addr, func(h http.Header) {
		mu.Lock()
		heard = append(heard, h.Clone())
		mu.Unlock()
	})

	envelopes := make(map[string]oddEnvelope, sessions)
	jobs := make(chan oddEnvelope)
	errs := make(chan error, sessions)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for e := range jobs {
				if err := e.run(addr); err != nil {
					errs <- fmt.Errorf("session %s: %w", e.token, err)
				}
			}
		})
	}
	for i := range sessions {
		e := newOddEnvelope(i)
		envelopes[e.token] = e
		jobs <- e
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// own returns the session whose token a request or a connection
	// holds, failing the test when it holds none or several. An HTTP
	// header loses its trailing spaces on the way.
	seen := map[string]int{}
	own := func(what string, text string) (oddEnvelope, bool) {
		found := slices.Compact(slices.Sorted(slices.Values(tokens.FindAllString(text, -1))))
		if len(found) != 1 {
			t.Errorf("%s holds the tokens %v:\n%q", what, found, text)
			return oddEnvelope{}, false
		}
		seen[what[:4]+found[0]]++
		return envelopes[found[0]], true
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != sessions {
		t.Errorf("the auth service heard %d requests for %d sessions", len(heard), sessions)
	}
	for _, hd := range heard {
		var all strings.Builder
		for name, values := range hd {
			all.WriteString(name + ": " + strings.Join(values, ", ") + "\n")
		}
		e, ok := own("auth request", all.String())
		if !ok {
			continue
		}
		if hd.Get("Auth-Method") != "none" || hd.Get("Auth-User") != "" || hd.Get("Auth-Pass") != "" ||
			hd.Get("Auth-SMTP-Helo") != e.helo || hd.Get("Auth-SMTP-From") != strings.TrimSpace(e.mail) || !slices.Equal(hd.Values("Auth-SMTP-To"), []string{e.rcpt}) {
			t.Errorf("session %s: the auth service heard\n%s", e.token, all.String())
		}
	}
	conns := rec.recordings()
	if len(conns) != sessions {
		t.Errorf("%d backend connections for %d sessions", len(conns), sessions)
	}
	for _, r := range conns {
		raw, _, _ := r.snapshot()
		e, ok := own("backend connection", string(raw))
		if !ok {
			continue
		}
		want := "EHLO proxy.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE] HELO=" + e.helo + "\r\nEHLO " + e.helo + "\r\n" +
			e.mail + "\r\n" + e.rcpt + "\r\nQUIT\r\n"
		if string(raw) != want {
			t.Errorf("session %s: the backend got\n%q\nwant\n%q", e.token, raw, want)
		}
	}
	for key, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", key, n)
		}
	}
	t.Logf("%d sessions, %d at once: each auth request and backend connection held its own session's lines only", sessions, workers)
}
