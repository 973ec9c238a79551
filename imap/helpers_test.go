package imap_test

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
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
	be, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: []mailtest.User{{Name: user, Password: password}, {Name: `o"dd \user`, Password: "pässword with spaces"}}})
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

// startFake starts a scripted IMAP backend that reads literals (answering
// "+" to the synchronising ones) and answers OK to every command ("NO go
// away" to a LOGIN of "refuse-me").
func startFake(t *testing.T, greeting string) *testutil.FakeBackend {
	t.Helper()
	return testutil.StartFake(t, testutil.Script{Greeting: greeting, Literals: true, Answer: func(c *testutil.FakeConn, cmd string) {
		tag, _, _ := strings.Cut(cmd, " ")
		if strings.Contains(cmd, "LOGIN \"refuse-me\"") {
			c.Reply(tag + " NO go away")
			return
		}
		c.Reply(tag + " OK done")
	}})
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
