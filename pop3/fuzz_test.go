package pop3

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// FuzzSession runs whole client dialogues through the command parser
// (without an Authenticator, so logins fail temporarily): whatever the
// client sends, the session ends without a panic or a hang.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\nUSER alice\r\nPASS secret\r\n",
		"APOP alice 0123456789abcdef0123456789abcdef\r\n",
		"AUTH\r\nAUTH PLAIN\r\n*\r\n",
		"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
		"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
		"AUTH CRAM-MD5\r\nYWxpY2UgMDEyMw==\r\n",
		"user\r\npass\r\nQUIT\r\n",
		"\x00\xff\r\n\n\r",
	} {
		f.Add(s)
	}
	f.Add("STLS\r\nUSER x\r\n")
	tlsConfig := testutil.ServerTLS(f)
	f.Fuzz(func(t *testing.T, input string) {
		srv := &Server{
			Config: session.Config{Timeout: time.Second, Logger: slog.New(slog.DiscardHandler),
				TLS: &session.TLS{Config: tlsConfig, StartTLS: session.StartTLSOn}},
			AuthMethods: []string{"plain", "apop", "cram-md5", "external"},
		}
		testutil.FuzzDialogue(t, input, srv.Serve, srv.Shutdown)
	})
}

// FuzzBackend logs a client in against a backend that says whatever the
// fuzzer makes it say (greeting, answers to USER and PASS, then the
// relay): the proxy reads it without a panic or a hang, and the session
// ends once both sides have left.
func FuzzBackend(f *testing.F) {
	client := "USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n"
	for _, s := range []string{
		"+OK ready\r\n+OK\r\n+OK logged in\r\n+OK 0 0\r\n+OK bye\r\n",
		"+OK ready <1.2@host>\r\n+OK\r\n-ERR [AUTH] no\r\n",
		"+OK ready\r\n-ERR no such user\r\n",
		"-ERR busy\r\n",
		"+OK ready\r\n+OK\r\n+OK" + strings.Repeat("x", 5000) + "\r\n",
		"\x00\xff\r\n\n",
	} {
		f.Add(client, s)
	}
	f.Add("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nLIST\r\n", "+OK\r\n+OK\r\n+OK\r\n+OK 1 messages\r\n1 120\r\n.\r\n")
	testutil.FuzzBackendSide(f, func(route auth.Authenticator, _ string) testutil.FuzzServer {
		return &Server{Config: session.Config{Timeout: time.Second, Logger: testutil.Discard, Auth: route}}
	})
}
