package smtp

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

func TestXText(t *testing.T) {
	for in, want := range map[string]string{
		"alice":               "alice",
		"[UNAVAILABLE]":       "[UNAVAILABLE]",
		"a+b=c":               "a+2Bb+3Dc",
		"two words":           "two+20words",
		"ü":                   "+C3+BC",
		"IPV6:2001:db8::1":    "IPV6:2001:db8::1",
		"line\r\nXCLIENT x=y": "line+0D+0AXCLIENT+20x+3Dy",
	} {
		if got := xtext(in); got != want {
			t.Errorf("xtext(%q) = %q, want %q", in, got, want)
		}
	}
}

// unxtext decodes xtext, for the fuzz target's round trip.
func unxtext(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), true
}

func FuzzXText(f *testing.F) {
	for _, s := range []string{"", "alice", "a+b=c", "ü\r\n", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := xtext(s)
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c < '!' || c > '~' || c == '=' {
				t.Fatalf("xtext(%q) = %q has %q", s, enc, c)
			}
		}
		if dec, ok := unxtext(enc); !ok || dec != s {
			t.Fatalf("round trip of %q gave %q", s, dec)
		}
	})
}

// FuzzSession runs whole client dialogues (without an Authenticator):
// odd MAIL and RCPT arguments with smtp_auth none included.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
		"EHLO x\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n",
		"EHLO x\r\nMAIL FROM:<\x00\xff> SIZE=\r\nRCPT TO:<\r\n",
		"MAIL FROM:\r\nRCPT TO:\r\nRSET\r\nQUIT\r\n",
	} {
		f.Add(s)
	}
	f.Add("EHLO x\r\nSTARTTLS\r\nAUTH PLAIN AHgAeQ==\r\n")
	tlsConfig := testutil.ServerTLS(f)
	f.Fuzz(func(t *testing.T, input string) {
		srv := &Server{
			Config: session.Config{Timeout: time.Second, Logger: slog.New(slog.DiscardHandler),
				TLS: &session.TLS{Config: tlsConfig, StartTLS: session.StartTLSOn}},
			AuthMethods: []string{"login", "plain", "cram-md5", "external", "none"},
		}
		testutil.FuzzDialogue(t, input, srv.Serve, srv.Shutdown)
	})
}

// FuzzBackend logs a client in against a backend that says whatever the
// fuzzer makes it say (greeting, EHLO, XCLIENT, AUTH, the replay of MAIL
// and RCPT with smtp_auth none, then the relay): the proxy reads it
// without a panic or a hang, and the session ends once both sides have
// left.
func FuzzBackend(f *testing.F) {
	login := "EHLO c.test\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b>\r\nQUIT\r\n"
	anonymous := "EHLO c.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nDATA\r\n"
	for _, s := range []string{
		"220 ready\r\n250-mx\r\n250 XCLIENT NAME ADDR LOGIN HELO\r\n220 again\r\n250 mx\r\n250 ok\r\n221 bye\r\n",
		"220 ready\r\n250 mx\r\n250 ok\r\n",
		"220-ready\r\n220 still\r\n250-mx\r\n250-PIPELINING\r\n250 XCLIENT ADDR\r\n550 no\r\n",
		"220 ready\r\n250-mx\r\n250 AUTH PLAIN\r\n535 5.7.8 no\r\n",
		"554 go away\r\n",
		"220 ready\r\n250" + strings.Repeat("-x\r\n250", 200) + " end\r\n",
		"2\r\n",
		"\x00\xff\r\n\n",
	} {
		f.Add(login, s)
		f.Add(anonymous, s)
	}
	testutil.FuzzBackendSide(f, func(route auth.Authenticator, input string) testutil.FuzzServer {
		return &Server{
			Config:      session.Config{Timeout: time.Second, Logger: testutil.Discard, Auth: route},
			AuthMethods: []string{"login", "plain", "none"},
			BackendAuth: len(input)%2 == 1, // proxy_smtp_auth for half the inputs
		}
	})
}
