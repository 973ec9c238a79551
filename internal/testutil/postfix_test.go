//go:build unix

package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// smtpMessage is a whole message with CR LF line ends, as on the wire. It
// has a Date and a Message-ID, so Postfix adds headers only on top of it,
// and a line that starts with a dot, which DATA must stuff and unstuff.
func smtpMessage(subject string) string {
	return "From: a@example.test\r\n" +
		"To: bob@example.test\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.test>\r\n" +
		"\r\n" +
		"Hello, Postfix.\r\n" +
		".a line that starts with a dot\r\n" +
		"\r\n" +
		"trailing space \r\n"
}

// dialSMTP connects to addr with a ten-second deadline, writes preface
// (a PROXY header, say) and reads the greeting.
func dialSMTP(t *testing.T, addr, preface string) *smtp.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, preface); err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sendMail runs one mail transaction for bob@example.test.
func sendMail(t *testing.T, c *smtp.Client, msg string) {
	t.Helper()
	if err := c.Mail("a@example.test"); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if err := c.Rcpt("bob@example.test"); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
}

// smtpCmd sends one command and reads its reply, which must have code.
func smtpCmd(t *testing.T, c *smtp.Client, code int, line string) string {
	t.Helper()
	id, err := c.Text.Cmd("%s", line)
	if err != nil {
		t.Fatal(err)
	}
	c.Text.StartResponse(id)
	defer c.Text.EndResponse(id)
	_, msg, err := c.Text.ReadResponse(code)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return msg
}

// delivered waits for the one message an instance gets and returns it.
func delivered(t *testing.T, p *Postfix) []byte {
	t.Helper()
	WaitFor(t, "delivery", func() bool { return len(p.Messages(t)) > 0 })
	msgs := p.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(msgs))
	}
	return msgs[0]
}

// checkMessage fails the test unless got is sent as Postfix stores it
// (LF line ends) below the headers Postfix adds.
func checkMessage(t *testing.T, got []byte, sent string) {
	t.Helper()
	want := strings.ReplaceAll(sent, "\r\n", "\n")
	if !bytes.HasSuffix(got, []byte(want)) {
		t.Fatalf("delivered:\n%s\nwant it to end with:\n%s", got, want)
	}
	added, _, _ := bytes.Cut(got, []byte(want))
	if !bytes.HasPrefix(added, []byte("Return-Path: <a@example.test>\n")) || !bytes.Contains(added, []byte("\nReceived: from ")) {
		t.Errorf("headers Postfix added:\n%s", added)
	}
}

func TestPostfixSMTP(t *testing.T) {
	t.Parallel()
	p := StartPostfix(t)
	c := dialSMTP(t, p.Addr, "")
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	msg := smtpMessage("testutil postfix smtp")
	sendMail(t, c, msg)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	got := delivered(t, p)
	checkMessage(t, got, msg)
	if !bytes.Contains(got, []byte("\nSubject: testutil postfix smtp\n")) {
		t.Errorf("no Subject in\n%s", got)
	}
	WaitFor(t, "client= in the log", func() bool { return p.LogContains("client=unknown[127.0.0.1]") })
}

func TestPostfixXCLIENT(t *testing.T) {
	t.Parallel()
	p := StartPostfix(t)
	c := dialSMTP(t, p.Addr, "")
	if err := c.Hello("proxy.test"); err != nil {
		t.Fatal(err)
	}
	ok, attrs := c.Extension("XCLIENT")
	if !ok || !strings.Contains(attrs, "ADDR") || !strings.Contains(attrs, "LOGIN") {
		t.Fatalf("EHLO has XCLIENT %v %q, want ADDR and LOGIN", ok, attrs)
	}
	// XCLIENT restarts the session: a new greeting, then EHLO again.
	smtpCmd(t, c, 220, "XCLIENT ADDR=192.0.2.9 NAME=client.example LOGIN=alice HELO=client.example")
	smtpCmd(t, c, 250, "EHLO client.example")

	// The client is no longer in mynetworks: no relaying.
	smtpCmd(t, c, 250, "MAIL FROM:<a@example.test>")
	if msg := smtpCmd(t, c, 554, "RCPT TO:<x@elsewhere.test>"); !strings.Contains(msg, "Relay access denied") {
		t.Errorf("RCPT for another domain after XCLIENT: %q", msg)
	}
	smtpCmd(t, c, 250, "RSET")

	msg := smtpMessage("testutil postfix xclient")
	sendMail(t, c, msg)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	got := delivered(t, p)
	checkMessage(t, got, msg)
	if !bytes.Contains(got, []byte("Received: from client.example (client.example [192.0.2.9])")) {
		t.Errorf("no Received line for the XCLIENT client in\n%s", got)
	}
	// XCLIENT LOGIN makes the session an authenticated one.
	WaitFor(t, "client= in the log", func() bool {
		return p.LogContains("client=client.example[192.0.2.9], sasl_method=XCLIENT, sasl_username=alice")
	})
}

// With a Dovecot for SASL, AUTH checks Dovecot's user; mail without AUTH
// is taken all the same.
func TestPostfixSASL(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t)
	p := StartPostfixSASL(t, d)
	c := dialSMTP(t, p.Addr, "")
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") {
		t.Fatalf("EHLO has AUTH %v %q, want PLAIN", ok, mechs)
	}
	smtpCmd(t, c, 235, "AUTH PLAIN "+B64("\x00"+d.User+"\x00"+d.Password))
	msg := smtpMessage("testutil postfix sasl")
	sendMail(t, c, msg)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	checkMessage(t, delivered(t, p), msg)
	WaitFor(t, "client= in the log", func() bool {
		return p.LogContains("client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=" + d.User)
	})
}

func TestPostfixPROXY(t *testing.T) {
	t.Parallel()
	p := StartPostfix(t)
	c := dialSMTP(t, p.ProxyAddr, "PROXY TCP4 192.0.2.10 127.0.0.1 54321 25\r\n")
	if err := c.Hello("proxied.test"); err != nil {
		t.Fatal(err)
	}
	msg := smtpMessage("testutil postfix proxy")
	sendMail(t, c, msg)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	checkMessage(t, delivered(t, p), msg)
	WaitFor(t, "client= in the log", func() bool { return p.LogContains("client=unknown[192.0.2.10]") })
	if !p.LogContains("connect from unknown[192.0.2.10]") {
		t.Error("no connect from the PROXY header's address in the log")
	}
}

func TestPostfixSwaks(t *testing.T) {
	t.Parallel()
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed: apt-get install swaks")
	}
	p := StartPostfix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, swaks, "--server", p.Addr,
		"--to", "bob@example.test", "--from", "a@example.test", "--pipeline",
		"--header", "Subject: testutil postfix swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	got := delivered(t, p)
	for _, want := range []string{"\nSubject: testutil postfix swaks\n", "\nX-Mailer: swaks "} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	if !bytes.Contains(out, []byte("PIPELINING")) {
		t.Errorf("swaks did not see PIPELINING:\n%s", out)
	}
}

// Two instances at once: their own ports and mail.
func TestPostfixTwoInstances(t *testing.T) {
	t.Parallel()
	a, b := StartPostfix(t), StartPostfix(t)
	if a.Addr == b.Addr || a.Dir == b.Dir {
		t.Fatalf("shared: %+v %+v", a, b)
	}
	for i, p := range []*Postfix{a, b} {
		c := dialSMTP(t, p.Addr, "")
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		sendMail(t, c, smtpMessage(fmt.Sprintf("instance %d", i)))
		c.Quit()
	}
	for i, p := range []*Postfix{a, b} {
		if got := delivered(t, p); !bytes.Contains(got, fmt.Appendf(nil, "Subject: instance %d\n", i)) {
			t.Errorf("instance %d got\n%s", i, got)
		}
	}
}
