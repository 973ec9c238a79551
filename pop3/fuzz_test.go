package pop3

import (
	"log/slog"
	"testing"
	"time"

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
