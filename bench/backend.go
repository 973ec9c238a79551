package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// The backends are scripted: each answers the few commands the
// generator and the proxies send, from a goroutine per connection with no
// mailbox behind it, so that they cost the generator's cores as little as
// a backend can. Every login succeeds; the one message of every mailbox
// is the bulk body (message), whatever its size.

// backend is one protocol's listeners: several ports, so that many idle
// sessions do not run out of the ports one address pair gives.
type backend struct {
	server
	proto string
	msg   []byte // the message: CRLF lines, none starting with "."
}

// startBackend starts the backend of proto on ports ports, with
// implicit TLS when tlsConf is set.
func startBackend(proto string, ports int, msg []byte, tlsConf *tls.Config) (*backend, error) {
	b := &backend{proto: proto, msg: msg}
	for range ports {
		ln, err := listenMSS()
		if err != nil {
			b.Close()
			return nil, err
		}
		if tlsConf != nil {
			ln = tls.NewListener(ln, tlsConf)
		}
		b.serve(ln, b.handle)
	}
	return b, nil
}

func (b *backend) handle(c net.Conn) {
	r := bufio.NewReaderSize(c, 16<<10)
	w := bufio.NewWriterSize(c, 4<<10)
	switch b.proto {
	case "imap":
		serveIMAP(r, w, b.msg)
	case "pop3":
		servePOP3(r, w, b.msg)
	case "smtp":
		serveSMTP(r, w)
	}
}

const imapCaps = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN"

// serveIMAP answers IMAP commands, with their literals, until LOGOUT.
func serveIMAP(r *bufio.Reader, w *bufio.Writer, msg []byte) {
	w.WriteString("* OK [CAPABILITY " + imapCaps + "] bench backend ready\r\n")
	for {
		if w.Flush() != nil {
			return
		}
		line, err := readIMAPCommand(r, w)
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(line, " ")
		verb, _, _ := strings.Cut(rest, " ")
		switch strings.ToUpper(verb) {
		case "CAPABILITY":
			w.WriteString("* CAPABILITY " + imapCaps + "\r\n" + tag + " OK done\r\n")
		case "ID":
			w.WriteString("* ID NIL\r\n" + tag + " OK ID done\r\n")
		case "LOGIN", "AUTHENTICATE":
			w.WriteString(tag + " OK [CAPABILITY IMAP4rev1 IDLE LITERAL+] Logged in\r\n")
		case "NOOP":
			w.WriteString(tag + " OK NOOP done\r\n")
		case "SELECT", "EXAMINE":
			w.WriteString("* 1 EXISTS\r\n" + tag + " OK [READ-WRITE] SELECT done\r\n")
		case "FETCH", "UID":
			fmt.Fprintf(w, "* 1 FETCH (BODY[] {%d}\r\n", len(msg))
			w.Flush()
			if _, err := w.Write(msg); err != nil {
				return
			}
			w.WriteString(")\r\n" + tag + " OK FETCH done\r\n")
		case "IDLE":
			w.WriteString("+ idling\r\n")
			w.Flush()
			if _, err := r.ReadSlice('\n'); err != nil {
				return
			}
			w.WriteString(tag + " OK IDLE done\r\n")
		case "LOGOUT":
			w.WriteString("* BYE bench backend logging out\r\n" + tag + " OK LOGOUT done\r\n")
			w.Flush()
			return
		default:
			w.WriteString(tag + " BAD unknown command\r\n")
		}
	}
}

// maxLiteral bounds the literals a backend reads into a command.
const maxLiteral = 64 << 10

// readIMAPCommand reads one command with its literals, answering the
// synchronising ones with a continuation request.
func readIMAPCommand(r *bufio.Reader, w *bufio.Writer) (string, error) {
	var cmd []byte
	for range 16 {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		n, sync, ok := literalSize(line)
		if !ok {
			return string(append(cmd, line...)), nil
		}
		cmd = append(cmd, line...)
		if sync {
			w.WriteString("+ go ahead\r\n")
			if err := w.Flush(); err != nil {
				return "", err
			}
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(r, lit); err != nil {
			return "", err
		}
		cmd = append(cmd, lit...)
	}
	return "", errors.New("too many literals")
}

// literalSize reads the {n} or {n+} that ends a line.
func literalSize(line []byte) (n int, sync, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	num := line[open+1 : len(line)-1]
	sync = true
	if len(num) > 0 && num[len(num)-1] == '+' {
		num, sync = num[:len(num)-1], false
	}
	n, err := strconv.Atoi(string(num))
	if err != nil || n < 0 || n > maxLiteral {
		return 0, false, false
	}
	return n, sync, true
}

// nextVerb sends what was written, then reads a command line and
// returns its verb in upper case; false when the connection failed.
func nextVerb(r *bufio.Reader, w *bufio.Writer) (string, bool) {
	if w.Flush() != nil {
		return "", false
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return "", false
	}
	verb, _, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
	return strings.ToUpper(verb), true
}

// servePOP3 answers POP3 commands until QUIT.
func servePOP3(r *bufio.Reader, w *bufio.Writer, msg []byte) {
	w.WriteString("+OK bench backend ready <1.1@bench>\r\n")
	for {
		verb, ok := nextVerb(r, w)
		if !ok {
			return
		}
		switch verb {
		case "CAPA":
			w.WriteString("+OK\r\nUSER\r\nTOP\r\nUIDL\r\n.\r\n")
		case "USER":
			w.WriteString("+OK\r\n")
		case "PASS":
			w.WriteString("+OK logged in\r\n")
		case "STAT":
			fmt.Fprintf(w, "+OK 1 %d\r\n", len(msg))
		case "NOOP", "RSET":
			w.WriteString("+OK\r\n")
		case "RETR":
			fmt.Fprintf(w, "+OK %d octets\r\n", len(msg))
			w.Flush()
			if _, err := w.Write(msg); err != nil {
				return
			}
			w.WriteString(".\r\n")
		case "QUIT":
			w.WriteString("+OK bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("-ERR unknown command\r\n")
		}
	}
}

// serveSMTP answers SMTP commands, XCLIENT included, until QUIT.
func serveSMTP(r *bufio.Reader, w *bufio.Writer) {
	w.WriteString("220 bench ESMTP ready\r\n")
	for {
		verb, ok := nextVerb(r, w)
		if !ok {
			return
		}
		switch verb {
		case "EHLO":
			w.WriteString("250-bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-XCLIENT ADDR LOGIN NAME HELO\r\n250-AUTH PLAIN\r\n250 SIZE 0\r\n")
		case "HELO", "MAIL", "RCPT", "RSET", "NOOP":
			w.WriteString("250 2.0.0 OK\r\n")
		case "XCLIENT":
			w.WriteString("220 bench ESMTP ready\r\n")
		case "AUTH":
			w.WriteString("235 2.7.0 Authenticated\r\n")
		case "DATA":
			w.WriteString("354 go ahead\r\n")
			w.Flush()
			if err := skipDotTerminated(r); err != nil {
				return
			}
			w.WriteString("250 2.0.0 queued\r\n")
		case "QUIT":
			w.WriteString("221 2.0.0 bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("502 5.5.2 unknown command\r\n")
		}
	}
}

var dotEnd = []byte("\r\n.\r\n")

// skipDotTerminated reads through a dot-terminated body (SMTP DATA, POP3
// RETR) in whole buffers, which reading it line by line would not keep up
// with. The body follows a line end, hence the CRLF it starts with.
func skipDotTerminated(r *bufio.Reader) error {
	var tail [4]byte // the last bytes seen, at most len(dotEnd)-1
	tn := copy(tail[:], "\r\n")
	for {
		if r.Buffered() == 0 {
			if _, err := r.Peek(1); err != nil {
				return err
			}
		}
		b, _ := r.Peek(r.Buffered())
		// The terminator may straddle the previous buffer and this one.
		var join [8]byte
		n := copy(join[:], tail[:tn])
		n += copy(join[n:], b[:min(len(b), len(tail))])
		if i := bytes.Index(join[:n], dotEnd); i >= 0 {
			_, err := r.Discard(i + len(dotEnd) - tn)
			return err
		}
		if i := bytes.Index(b, dotEnd); i >= 0 {
			_, err := r.Discard(i + len(dotEnd))
			return err
		}
		n = copy(join[:], tail[:tn])
		n += copy(join[n:], b[max(0, len(b)-len(tail)):])
		tn = copy(tail[:], join[max(0, n-len(tail)):n])
		r.Discard(len(b))
	}
}

// makeMessage builds a message of about size bytes: a header, then lines
// of 76 letters.
func makeMessage(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 128)
	b.WriteString("From: bench@bench.local\r\nTo: user@bench.local\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 3)[:76] + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.Bytes()
}
