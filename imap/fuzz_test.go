package imap

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

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

// pipeListener hands out one end of a net.Pipe, once.
type pipeListener struct {
	conn            net.Conn
	once, closeOnce sync.Once
	done            chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// FuzzSession runs whole client dialogues (without an Authenticator, so
// logins fail temporarily): whatever the client sends, the session ends
// without a panic or a hang once the client stops.
func FuzzSession(f *testing.F) {
	for _, s := range parserSeeds {
		f.Add(s + "\r\nb NOOP\r\n")
	}
	f.Add("a LOGIN {3}\r\nabc {2}\r\nxy\r\n")
	f.Add("a AUTHENTICATE PLAIN\r\n*\r\n")
	f.Fuzz(func(t *testing.T, input string) {
		client, server := net.Pipe()
		srv := &Server{
			Config:       session.Config{Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)},
			AuthMethods:  []string{"plain", "login", "cram-md5", "external"},
			ClientBuffer: 256,
		}
		go srv.Serve(&pipeListener{conn: server, done: make(chan struct{})})
		read := make(chan struct{})
		go func() { io.Copy(io.Discard, client); close(read) }()
		io.WriteString(client, input)
		client.Close()
		<-read
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("session did not end: %v", err)
		}
	})
}
