package imap_test

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/mailtest"
	"github.com/mailproxy/mailproxy/internal/testutil"
)

const (
	user     = "alice"
	password = "secret"
)

// setup is a proxy in front of an in-memory IMAP backend.
type setup struct {
	backend *mailtest.IMAPServer
	proxy   string           // the proxy's address
	logs    *testutil.Buffer // the proxy's, to search them for credentials
}

// start runs srv (its Auth defaulting to a table with alice → the
// backend) in front of a fresh backend.
func start(t *testing.T, srv *imap.Server) *setup {
	t.Helper()
	be, err := mailtest.StartIMAP([]mailtest.User{{Name: user, Password: password}, {Name: `o"dd \user`, Password: "pässword with spaces"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	if srv.Config.Auth == nil {
		srv.Config.Auth = auth.Static{
			user:                 {Password: password, Backend: be.Addr},
			`o"dd \user`:         {Password: "pässword with spaces", Backend: be.Addr},
			"wrong-backend-pass": {Password: "x", Backend: be.Addr, BackendUser: user, BackendPassword: "nope"},
		}
	}
	logs := &testutil.Buffer{}
	if srv.Config.Logger == nil {
		srv.Config.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return &setup{backend: be, proxy: serve(t, srv), logs: logs}
}

// serve runs srv, logging nothing unless it has a Logger, and returns its
// address.
func serve(t *testing.T, srv *imap.Server) string {
	t.Helper()
	srv.Config.Logger = cmp.Or(srv.Config.Logger, testutil.Discard)
	return testutil.Serve(t, srv)
}

// greet connects and reads the greeting.
func greet(t *testing.T, addr string) *testutil.Client {
	t.Helper()
	c := testutil.Dial(t, "tcp", addr)
	if g := c.Line(); !strings.HasPrefix(g, "* OK [CAPABILITY ") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

// fakeBackend is a scripted IMAP backend that records what the proxy sends.
type fakeBackend struct {
	ln       net.Listener
	greeting string
	mu       sync.Mutex
	received []string
}

func startFake(t *testing.T, greeting string) *fakeBackend {
	t.Helper()
	f := &fakeBackend{greeting: greeting}
	f.ln = testutil.Accept(t, f.handle)
	return f
}

// handle answers "+" to every synchronising literal and OK to every
// command ("NO go away" to a LOGIN of "refuse-me"), and records what it
// reads.
func (f *fakeBackend) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	c.Write([]byte(f.greeting + "\r\n"))
	for {
		cmd, err := readFakeCommand(c, r)
		f.mu.Lock()
		f.received = append(f.received, cmd)
		f.mu.Unlock()
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(cmd, " ")
		if strings.Contains(cmd, "LOGIN \"refuse-me\"") {
			c.Write([]byte(tag + " NO go away\r\n"))
			continue
		}
		c.Write([]byte(tag + " OK done\r\n"))
	}
}

// readFakeCommand reads a command with its literals, answering "+" to the
// synchronising ones.
func readFakeCommand(c net.Conn, r *bufio.Reader) (string, error) {
	var cmd strings.Builder
	for {
		line, err := r.ReadString('\n')
		cmd.WriteString(line)
		if err != nil {
			return cmd.String(), err
		}
		open := strings.LastIndexByte(line, '{')
		if open < 0 || !strings.HasSuffix(line, "}\r\n") {
			return cmd.String(), nil
		}
		spec := line[open+1 : len(line)-3]
		sync := !strings.HasSuffix(spec, "+")
		var n int
		fmt.Sscanf(strings.TrimSuffix(spec, "+"), "%d", &n)
		if sync {
			c.Write([]byte("+ go ahead\r\n"))
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(r, lit); err != nil {
			return cmd.String(), err
		}
		cmd.Write(lit)
	}
}

// sent returns everything the backend received, joined.
func (f *fakeBackend) sent() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.received, "")
}

// authFunc is an Authenticator for tests.
type authFunc = auth.AuthenticatorFunc

func accept(backend string) auth.Authenticator {
	return authFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		return &auth.Result{Backend: backend}, nil
	})
}

// clientLogin logs c in with the LOGIN command or AUTHENTICATE PLAIN.
func clientLogin(t *testing.T, c *imapclient.Client, method, user, pass string) {
	t.Helper()
	var err error
	switch method {
	case "LOGIN":
		err = c.Login(user, pass).Wait()
	case "AUTHENTICATE PLAIN":
		err = c.Authenticate(sasl.NewPlainClient("", user, pass))
	default:
		t.Fatalf("unknown login method %q", method)
	}
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

// appendMessage appends msg to INBOX and returns its UID.
func appendMessage(t *testing.T, c *imapclient.Client, msg string) goimap.UID {
	t.Helper()
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := io.WriteString(cmd, msg); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	if data.UID == 0 {
		t.Fatal("APPEND: no APPENDUID")
	}
	return data.UID
}
