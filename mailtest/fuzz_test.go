package mailtest

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzPOP3Command feeds arbitrary client input to the command parser and to
// a whole POP3 session. Neither may panic, and the session must end when the
// input does, leaving the maildrop unlocked.
func FuzzPOP3Command(f *testing.F) {
	for _, seed := range []string{
		"CAPA\r\n",
		"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nRETR 1\r\nTOP 1 1\r\nUIDL\r\nDELE 1\r\nQUIT\r\n",
		"USER alice\r\nPASS secret\r\nLIST 99\r\nRETR 0\r\nTOP 1 -1\r\nDELE 1\r\nRSET\r\nNOOP\r\n",
		"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nRETR 2\r\nQUIT\r\n",
		"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nUIDL 1\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\nAUTH\r\n",
		"APOP alice 0123456789abcdef0123456789abcdef\r\n",
		"user alice\npass secret\nstat\n",
		"\r\n \r\nX\r\nABCDE\r\nSTAT\x00\r\n",
		strings.Repeat("A", 600) + "\r\nNOOP\r\n",
		strings.Repeat("BAD\r\n", 120),
		"USER alice\r\nPASS secret\r\nRETR",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		for line := range strings.Lines(input) {
			checkParse(t, strings.TrimRight(line, "\r\n"))
		}
		s := newPOP3Server(POP3Options{Users: testUsers, Logger: quietLogger()})
		for _, msg := range []string{"Subject: x\r\n\r\n.body\r\n", "no header"} {
			if err := s.AddMessage("alice", []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		var out bytes.Buffer
		s.newSession(struct {
			io.Reader
			io.Writer
		}{strings.NewReader(input), &out}).run()
		if !strings.HasPrefix(out.String(), "+OK POP3 ready <") || !bytes.HasSuffix(out.Bytes(), []byte("\r\n")) {
			t.Fatalf("output %q", out.String())
		}
		if _, ok := s.lock("alice"); !ok {
			t.Fatal("maildrop still locked after the session")
		}
	})
}

func checkParse(t *testing.T, line string) {
	name, arg, err := parsePOP3Command(line)
	if err != nil {
		return
	}
	if len(name) < 3 || len(name) > 4 || strings.ToUpper(name) != name {
		t.Fatalf("parsePOP3Command(%q) name %q", line, name)
	}
	if !strings.EqualFold(line, name) && !strings.EqualFold(line, name+" "+arg) {
		t.Fatalf("parsePOP3Command(%q) = %q, %q: does not rebuild the line", line, name, arg)
	}
}
