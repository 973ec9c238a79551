package imap_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// A real IMAP client logs in through the proxy, and its session is relayed
// to the backend: append and fetch a message, byte for byte.
func TestLoginThenRelay(t *testing.T) {
	for _, method := range []string{"LOGIN", "AUTHENTICATE PLAIN"} {
		t.Run(method, func(t *testing.T) {
			s := start(t, &imap.Server{})
			c, err := imapclient.DialInsecure(s.proxy, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			clientLogin(t, c, method, user, password)
			msg := "From: a@example.org\r\nSubject: relay\r\n\r\nThrough the proxy.\r\n"
			appendMessage(t, c, msg)
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{{}}}).Collect()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("fetch: %v %d", err, len(msgs))
			}
			for _, body := range msgs[0].BodySection {
				if string(body.Bytes) != msg {
					t.Errorf("fetched %q", body.Bytes)
				}
			}
			if err := c.Logout().Wait(); err != nil {
				t.Errorf("logout: %v", err)
			}
			if strings.Contains(s.logs.String(), password) {
				t.Errorf("the password is in the logs:\n%s", s.logs.String())
			}
		})
	}
}

func TestCapability(t *testing.T) {
	// The configured list as written, then the AUTH= entries in nginx's
	// order, whatever order imap_auth gives.
	s := start(t, &imap.Server{AuthMethods: []string{"external", "cram-md5", "login", "plain"}})
	c := greet(t, s.proxy)
	got := c.Cmd("A.1-x CAPABILITY", "A.1-x ")
	want := []string{"* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5 AUTH=EXTERNAL", "A.1-x OK CAPABILITY completed"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestTranscripts(t *testing.T) {
	tests := []struct {
		name  string
		srv   *imap.Server
		steps []testutil.Step
	}{
		{"sync literals", &imap.Server{}, []testutil.Step{
			{"a LOGIN {5}\r\n", "+ OK"},
			{"alice {6}\r\n", "+ OK"},
			{"secret\r\n", "a OK "},
			{"b NOOP\r\n", "b OK"}, // answered by the backend
		}},
		{"non-synchronising literals in one write", &imap.Server{}, []testutil.Step{
			{"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n", "a OK "},
		}},
		{"quoted strings with escapes, UTF-8 password", &imap.Server{}, []testutil.Step{
			{"t1 LOGIN \"o\\\"dd \\\\user\" \"pässword with spaces\"\r\n", "t1 OK "},
		}},
		{"literal too big", &imap.Server{ClientBuffer: 64}, []testutil.Step{
			{"a LOGIN {65}\r\n", "a BAD literal too big"},
			{"b NOOP\r\n", "b OK NOOP completed"},
		}},
		{"literals share the client buffer with the command", &imap.Server{ClientBuffer: 64}, []testutil.Step{
			{"a LOGIN {20}\r\n", "+ OK"},
			{strings.Repeat("x", 20) + " {40}\r\n", "a BAD literal too big"},
			{"b NOOP\r\n", "b OK NOOP completed"},
		}},
		{"non-synchronising literal too big", &imap.Server{ClientBuffer: 64}, []testutil.Step{
			{"a LOGIN {65+}\r\n", "* BYE literal too big", "<closed>"},
		}},
		{"bad syntax", &imap.Server{Config: session.Config{MaxErrors: 10}}, []testutil.Step{
			{"a LOGIN alice\r\n", "a BAD invalid LOGIN arguments"},
			{"a LOGIN \"alice secret\r\n", "a BAD invalid arguments"},
			{"bad+tag NOOP\r\n", "* BAD invalid command"},
			{"nocommand\r\n", "* BAD invalid command"},
			{"a FETCH 1 BODY[]\r\n", "a BAD invalid command"},
			{"a ID (\"x\")\r\n", "a BAD invalid ID arguments"},
		}},
		{"max_errors", &imap.Server{}, []testutil.Step{
			{"a X\r\nb X\r\nc X\r\nd X\r\ne X\r\n", "a BAD", "b BAD", "c BAD", "d BAD", "e BAD", "* BYE too many invalid commands", "<closed>"},
		}},
		{"max_commands", &imap.Server{Config: session.Config{MaxCommands: 3}}, []testutil.Step{
			{"a NOOP\r\nb NOOP\r\nc NOOP\r\nd NOOP\r\n", "a OK", "b OK", "c OK", "* BYE too many commands", "<closed>"},
		}},
		{"line too long", &imap.Server{ClientBuffer: 64}, []testutil.Step{
			{"a NOOP " + strings.Repeat("x", 100) + "\r\nb NOOP\r\n", "* BYE line too long", "<closed>"},
		}},
		{"a SASL response beyond the client buffer ends the session", &imap.Server{ClientBuffer: 64}, []testutil.Step{
			{"a AUTHENTICATE PLAIN\r\n", "+ "},
			{strings.Repeat("A", 100) + "\r\n", "* BYE line too long", "<closed>"},
		}},
		{"a line after a literal beyond the client buffer ends the session", &imap.Server{ClientBuffer: 64}, []testutil.Step{
			{"a LOGIN {5}\r\n", "+ OK"},
			{"alice " + strings.Repeat("x", 100) + "\r\n", "* BYE line too long", "<closed>"},
		}},
		{"wrong password closes, as nginx without Auth-Wait", &imap.Server{}, []testutil.Step{
			{"a LOGIN alice wrong\r\n", "a NO [AUTHENTICATIONFAILED] Invalid login or password", "<closed>"},
		}},
		{"pipelined commands, the last one for the backend", &imap.Server{}, []testutil.Step{
			{"a CAPABILITY\r\nb NOOP\r\nc LOGIN alice secret\r\nd SELECT INBOX\r\n",
				"* CAPABILITY", "a OK", "b OK", "c OK ", "…d OK [READ-WRITE]"},
		}},
		{"ID", &imap.Server{}, []testutil.Step{
			{"a ID (\"name\" \"client\" \"version\" NIL)\r\n", `* ID ("name" "mailproxy")`, "a OK ID completed"},
			{"b ID NIL\r\n", `* ID`, "b OK"},
		}},
		{"AUTHENTICATE PLAIN without initial response", &imap.Server{}, []testutil.Step{
			{"a AUTHENTICATE PLAIN\r\n", "+ "},
			{testutil.B64("\x00alice\x00secret") + "\r\n", "a OK "},
		}},
		{"AUTHENTICATE cancelled, bad base64, empty initial response", &imap.Server{}, []testutil.Step{
			{"a AUTHENTICATE PLAIN\r\n", "+ "},
			{"*\r\n", "a BAD AUTHENTICATE cancelled"},
			{"b AUTHENTICATE PLAIN\r\n", "+ "},
			{"!!!\r\n", "b BAD invalid base64"},
			{"c AUTHENTICATE PLAIN =\r\n", "c NO [AUTHENTICATIONFAILED] invalid SASL response"},
			{"d AUTHENTICATE PLAIN " + testutil.B64("other\x00alice\x00secret") + "\r\n", "d NO [AUTHENTICATIONFAILED]"},
		}},
		{"AUTHENTICATE LOGIN", &imap.Server{AuthMethods: []string{"login"}}, []testutil.Step{
			{"a AUTHENTICATE LOGIN\r\n", "+ VXNlcm5hbWU6"},
			{testutil.B64("alice") + "\r\n", "+ UGFzc3dvcmQ6"},
			{testutil.B64("secret") + "\r\n", "a OK "},
		}},
		{"AUTHENTICATE LOGIN with initial response", &imap.Server{AuthMethods: []string{"login"}}, []testutil.Step{
			{"a AUTHENTICATE LOGIN " + testutil.B64("alice") + "\r\n", "+ UGFzc3dvcmQ6"},
			{testutil.B64("secret") + "\r\n", "a OK "},
		}},
		{"LOGIN is taken though not announced, as LOGIN is", &imap.Server{}, []testutil.Step{
			{"a AUTHENTICATE LOGIN\r\n", "+ VXNlcm5hbWU6"},
			{testutil.B64("alice") + "\r\n", "+ UGFzc3dvcmQ6"},
			{testutil.B64("secret") + "\r\n", "a OK "},
		}},
		{"mechanisms not configured", &imap.Server{}, []testutil.Step{
			{"a AUTHENTICATE CRAM-MD5\r\n", "a NO unsupported authentication mechanism"},
			{"b AUTHENTICATE EXTERNAL =\r\n", "b NO unsupported authentication mechanism"},
			{"c AUTHENTICATE X-UNKNOWN\r\n", "c NO unsupported"},
		}},
		{"EXTERNAL without TLS goes to the Authenticator", &imap.Server{AuthMethods: []string{"external"}}, []testutil.Step{
			{"a CAPABILITY\r\n", "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=EXTERNAL", "a OK"},
			{"b AUTHENTICATE EXTERNAL\r\n", "+ "},
			{testutil.B64("alice") + "\r\n", "b NO [AUTHENTICATIONFAILED] Invalid login or password"},
		}},
		{"logout", &imap.Server{}, []testutil.Step{
			{"z LOGOUT\r\n", "* BYE", "z OK LOGOUT completed", "<closed>"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.srv)
			greet(t, s.proxy).Play(tt.steps)
		})
	}
}

// After a refusal with a wait the client may try again, and the attempts
// are counted.
func TestRetryAfterWait(t *testing.T) {
	var mu sync.Mutex
	var attempts []int
	s := start(t, &imap.Server{})
	srv := &imap.Server{Config: session.Config{Auth: authFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		mu.Lock()
		attempts = append(attempts, req.Attempt)
		mu.Unlock()
		if req.Password != password {
			return &auth.Result{Error: "Try again", Wait: 50 * time.Millisecond}, nil
		}
		return &auth.Result{Backend: s.backend.Addr}, nil
	})}}
	c := greet(t, serve(t, srv))
	start := time.Now()
	c.Exchange("a LOGIN alice wrong\r\n", "a NO [AUTHENTICATIONFAILED] Try again")
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("refusal after %v, before the wait", took)
	}
	c.Exchange("b LOGIN alice secret\r\n", "b OK ")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2]" {
		t.Errorf("attempts %v", attempts)
	}
}

func TestTemporaryFailures(t *testing.T) {
	deadAddr := testutil.FreeAddr(t) // nothing listens there
	tests := []struct {
		name string
		auth auth.Authenticator
		want string
	}{
		{"no authenticator", nil, "a NO [UNAVAILABLE] Temporary authentication failure"},
		{"authenticator error", authFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
			return nil, errors.New("ldap down")
		}), "a NO [UNAVAILABLE] Temporary authentication failure"},
		{"backend down", accept(deadAddr), "a NO [UNAVAILABLE] Backend unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := greet(t, serve(t, &imap.Server{Config: session.Config{Auth: tt.auth}}))
			c.Play([]testutil.Step{
				{"a LOGIN alice secret\r\n", tt.want},
				{"b NOOP\r\n", "b OK NOOP completed"}, // the session goes on
			})
		})
	}
}

func TestBackendRefusal(t *testing.T) {
	for _, pass := range []bool{false, true} {
		t.Run(fmt.Sprintf("proxy_pass_error_message=%v", pass), func(t *testing.T) {
			fake := startFake(t, "* OK hi")
			srv := &imap.Server{Config: session.Config{PassErrorMessage: pass, Auth: authFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
				return &auth.Result{Backend: fake.Addr, User: "refuse-me", Password: "x"}, nil
			})}}
			want := map[bool]string{false: "a NO [AUTHENTICATIONFAILED] Authentication failed", true: "a NO go away"}[pass]
			greet(t, serve(t, srv)).Play([]testutil.Step{
				{"a LOGIN u p\r\n", want},
				{"b NOOP\r\n", "b OK NOOP completed"},
			})
		})
	}
}

// The backend's answer to LOGIN reaches the client under the client's tag:
// the untagged data it sent first (with its literals, read as literals),
// then the tagged reply with its response code, then what it sent after,
// each once; never the answer to the
// proxy's own ID, nor a continuation request for the proxy's literal, nor
// the untagged data of a refusal.
func TestBackendAnswer(t *testing.T) {
	const caps = "IMAP4rev1 IDLE X-AFTER-LOGIN"
	fake := testutil.StartFake(t, testutil.Script{Greeting: "* OK [CAPABILITY IMAP4rev1 ID] fake", Literals: true, Answer: func(c *testutil.FakeConn, cmd string) {
		tag, rest, _ := strings.Cut(cmd, " ")
		verb, _, _ := strings.Cut(rest, " ")
		switch {
		case verb == "ID":
			c.Reply(`* ID ("name" "fake")`, tag+" OK ID completed")
		case verb == "LOGIN" && strings.Contains(rest, `"refuse-me"`):
			c.Reply("* CAPABILITY IMAP4rev1 X-REFUSED", tag+" NO [AUTHENTICATIONFAILED] refused by the backend")
		case verb == "LOGIN":
			// In one write: the line after the OK reaches the proxy with
			// it, in the buffer the login reply was read through. The
			// literal holds a line that looks like the tagged reply.
			c.Reply("* CAPABILITY "+caps, "* OK [ALERT] welcome", `* ID ("name" {11}`, tag+` OK fake)`,
				tag+" OK [CAPABILITY "+caps+"] Logged in", "* 1 EXISTS")
		default:
			c.Reply(tag + " OK " + verb + " from the backend")
		}
	}})
	loggedIn := []string{"* CAPABILITY " + caps, "* OK [ALERT] welcome", `* ID ("name" {11}`, `mp2 OK fake)`,
		"x OK [CAPABILITY " + caps + "] Logged in", "* 1 EXISTS"}
	tests := []struct {
		name        string
		backendUser string
		steps       []testutil.Step
	}{
		{"LOGIN", "alice", []testutil.Step{
			append(testutil.Step{"x LOGIN alice secret\r\n"}, loggedIn...),
			{"y NOOP\r\n", "y OK NOOP from the backend"},
		}},
		{"AUTHENTICATE PLAIN", "alice", []testutil.Step{
			append(testutil.Step{"x AUTHENTICATE PLAIN " + testutil.B64("\x00alice\x00secret") + "\r\n"}, loggedIn...),
			{"y NOOP\r\n", "y OK NOOP from the backend"},
		}},
		{"backend user in a synchronising literal", "ünï", []testutil.Step{
			append(testutil.Step{"x LOGIN alice secret\r\n"}, loggedIn...),
			{"y NOOP\r\n", "y OK NOOP from the backend"},
		}},
		{"refused, proxy_pass_error_message", "refuse-me", []testutil.Step{
			{"x LOGIN alice secret\r\n", "x NO [AUTHENTICATIONFAILED] refused by the backend"},
			{"y NOOP\r\n", "y OK NOOP completed"}, // the proxy's: the session is not relayed
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &imap.Server{Config: session.Config{PassErrorMessage: true, Auth: authFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
				return &auth.Result{Backend: fake.Addr, User: tt.backendUser, Password: "x"}, nil
			})}}
			greet(t, serve(t, srv)).Play(tt.steps)
		})
	}
}

// The backend login quotes what it can and sends the rest as literals,
// non-synchronising when the backend has LITERAL+; the client's ID goes
// along with its address.
func TestBackendLoginEncoding(t *testing.T) {
	tests := []struct {
		name, greeting, user, pass string
		want                       []string
	}{
		{"quoted", "* OK [CAPABILITY IMAP4rev1] hi", `a"b\c`, "p w",
			[]string{`mp2 LOGIN "a\"b\\c" "p w"` + "\r\n"}},
		{"synchronising literal", "* OK hi", "ünï", "line\r\nbreak",
			[]string{"mp2 LOGIN {5}\r\n", "ünï {11}\r\n", "line\r\n", "break\r\n"}},
		{"LITERAL+ and ID", "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] hi", "ünï", "x",
			[]string{`mp1 ID ("name" "t" "x-originating-ip" "127.0.0.1" "x-originating-port" "`, "mp2 LOGIN {5+}\r\n", `ünï "x"`}},
		{"ID, then a synchronising literal", "* OK [CAPABILITY IMAP4rev1 ID] hi", "ünï", "x",
			[]string{`mp1 ID ("name" "t"`, "mp2 LOGIN {5}\r\n", `ünï "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, tt.greeting)
			srv := &imap.Server{Config: session.Config{Auth: authFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
				return &auth.Result{Backend: fake.Addr, User: tt.user, Password: tt.pass}, nil
			})}}
			c := greet(t, serve(t, srv))
			c.Play([]testutil.Step{
				{"i ID (\"name\" \"t\" \"x-originating-ip\" \"6.6.6.6\" \"x-session-id\" \"spoofed\")\r\n", "* ID", "i OK"},
				{"a LOGIN u p\r\n", "a OK done"},
			})
			got := strings.Join(fake.Received(), "\r\n") + "\r\n" // the bytes it read
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("backend got %q, want %q in it", got, w)
				}
			}
			if strings.Contains(got, "6.6.6.6") || strings.Contains(got, "spoofed") {
				t.Error("the client could set an ID field only the proxy may set")
			}
		})
	}
}

// The client's ID goes in the same write as LOGIN, one round trip instead
// of two: a backend that answers ID only once LOGIN has come logs the
// client in.
func TestBackendIDPipelined(t *testing.T) {
	fake := testutil.StartFake(t, testutil.Script{Greeting: "* OK [CAPABILITY IMAP4rev1 ID] hi", Answer: func(c *testutil.FakeConn, cmd string) {
		tag, _, _ := strings.Cut(cmd, " ")
		if !strings.HasPrefix(cmd, "mp1 ID ") {
			c.Reply(tag + " BAD ID first")
			return
		}
		login, err := c.ReadLine()
		if err != nil {
			return
		}
		tag, _, _ = strings.Cut(login, " ")
		c.Reply("* ID NIL", "mp1 OK ID completed", tag+" OK logged in")
	}})
	srv := &imap.Server{Config: session.Config{Timeout: 2 * time.Second, Auth: accept(fake.Addr)}}
	greet(t, serve(t, srv)).Play([]testutil.Step{{"a LOGIN u p\r\n", "a OK logged in"}})
}

// CRAM-MD5: the Authenticator gets the digest and the challenge, and
// returns the password for the backend.
func TestCRAMMD5(t *testing.T) {
	s := start(t, &imap.Server{})
	srv := &imap.Server{AuthMethods: []string{"cram-md5"}, Config: session.Config{Auth: authFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		mac := hmac.New(md5.New, []byte(password))
		mac.Write([]byte(req.Salt))
		if req.Method != auth.MethodCRAMMD5 || req.User != user || req.Password != hex.EncodeToString(mac.Sum(nil)) {
			return &auth.Result{Error: "bad digest"}, nil
		}
		return &auth.Result{Backend: s.backend.Addr, Password: password}, nil
	})}}
	c := greet(t, serve(t, srv))
	c.Send("a AUTHENTICATE CRAM-MD5")
	line := c.Line()
	challenge, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "+ "))
	if err != nil || !bytes.HasPrefix(challenge, []byte("<")) {
		t.Fatalf("challenge %q", line)
	}
	mac := hmac.New(md5.New, []byte(password))
	mac.Write(challenge)
	c.Exchange(testutil.B64(user+" "+hex.EncodeToString(mac.Sum(nil)))+"\r\n", "a OK ")
}

func TestTimeout(t *testing.T) {
	s := start(t, &imap.Server{Config: session.Config{Timeout: 100 * time.Millisecond}})
	c := greet(t, s.proxy)
	start := time.Now()
	if !c.Closed() {
		t.Fatal("idle client not disconnected")
	}
	if took := time.Since(start); took < 80*time.Millisecond || took > 3*time.Second {
		t.Errorf("disconnected after %v", took)
	}
}
