package imap

import (
	"log/slog"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

var parserSeeds = []string{
	"a LOGIN alice secret",
	`a LOGIN "al\"ice" "p w"`,
	"a LOGIN {5}",
	"a LOGIN {5+}",
	`a ID ("name" "x" "version" NIL)`,
	"a ID NIL",
	"a AUTHENTICATE PLAIN =",
	"+ NOOP",
	"a (",
	`a "unterminated`,
	"a {99999999999}",
	"a LOGIN \x00 \xff",
}

// FuzzParse feeds command lines to the command and argument parsers.
func FuzzParse(f *testing.F) {
	for _, s := range parserSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		tag, name, rest, ok := splitCommand([]byte(line))
		if ok && (tag == "" || name == "" || !validTag([]byte(tag))) {
			t.Fatalf("accepted tag %q name %q", tag, name)
		}
		toks, lit, err := tokenize(rest)
		if err != nil {
			return
		}
		if lit != nil && lit.size < 0 {
			t.Fatalf("negative literal %d", lit.size)
		}
		for _, tk := range toks {
			if tk.kind == atomToken && (tk.value == "" || atomLen([]byte(tk.value)) != len(tk.value)) {
				t.Fatalf("bad atom %q", tk.value)
			}
		}
		idParams(toks)
		astrings(toks, 2)
	})
}

// FuzzSession runs whole client dialogues (without an Authenticator, so
// logins fail temporarily): whatever the client sends, the session ends
// without a panic or a hang once the client stops.
func FuzzSession(f *testing.F) {
	for _, s := range parserSeeds {
		f.Add(s + "\r\nb NOOP\r\n")
	}
	f.Add("a LOGIN {3}\r\nabc {2}\r\nxy\r\n")
	f.Add("a AUTHENTICATE PLAIN\r\n*\r\n")
	f.Add("s STARTTLS\r\na LOGIN x y\r\n")
	tlsConfig := testutil.ServerTLS(f)
	f.Fuzz(func(t *testing.T, input string) {
		srv := &Server{
			Config: session.Config{Timeout: time.Second, Logger: slog.New(slog.DiscardHandler),
				TLS: &session.TLS{Config: tlsConfig, StartTLS: session.StartTLSOn}},
			AuthMethods:  []string{"plain", "login", "cram-md5", "external"},
			ClientBuffer: 256,
		}
		testutil.FuzzDialogue(t, input, srv.Serve, srv.Shutdown)
	})
}

// FuzzBackend logs a client in against a backend that says whatever the
// fuzzer makes it say (greeting, capabilities, answers to ID and LOGIN,
// literals, then the relay): the proxy reads it without a panic or a hang,
// and the session ends once both sides have left.
func FuzzBackend(f *testing.F) {
	client := "a LOGIN alice secret\r\nb NOOP\r\nc LOGOUT\r\n"
	for _, s := range []string{
		"* OK ready\r\nmp2 OK logged in\r\n* BYE\r\nc OK\r\n",
		"* OK [CAPABILITY IMAP4rev1 ID] ready\r\n* ID NIL\r\nmp1 OK\r\n* CAPABILITY IMAP4rev1\r\nmp2 OK [CAPABILITY IMAP4rev1] done\r\n",
		"* OK ready\r\n* 1 FETCH (BODY[] {11}\r\nmp2 OK fake)\r\nmp2 NO [AUTHENTICATIONFAILED] no\r\n",
		"* OK [CAPABILITY IMAP4rev1 LITERAL-] ready\r\n+ go on\r\nmp2 OK\r\n",
		"* OK ready\r\n* {4294967296}\r\n",
		"* OK ready\r\nmp2 BAD\r\n",
		"* BYE go away\r\n",
		"\x00\xff\r\n\n",
	} {
		f.Add(client, s)
	}
	f.Add("a LOGIN {5}\r\nalice {6}\r\nsecret\r\n", "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] ready\r\nmp1 OK\r\nmp2 OK\r\n")
	testutil.FuzzBackendSide(f, func(route auth.Authenticator, _ string) testutil.FuzzServer {
		return &Server{Config: session.Config{Timeout: time.Second, Logger: testutil.Discard, Auth: route}}
	})
}
