package mailproxy_test

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// converse dials the proxy and runs the session's dialogue. It returns
// how the session ended (one of the end constants, or "stuck" or
// "unexpected") and what went wrong.
func (h *chaos) converse(run *chaosRun, s chaosScenario) (string, string) {
	d := net.Dialer{Timeout: h.size.wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.source)}}
	nc, err := d.Dial("tcp4", h.proxy.addrs[s.proto])
	if err != nil {
		return "unexpected", "dial: " + err.Error()
	}
	defer nc.Close()
	c := &chaosConn{conn: nc, r: bufio.NewReader(nc), wait: h.size.wait}
	switch s.proto {
	case chaosIMAP:
		return c.imap(s)
	case chaosPOP3:
		return c.pop3(s)
	}
	return c.smtp(s, run)
}

// chaosConn is a client's connection to the proxy.
type chaosConn struct {
	conn net.Conn
	r    *bufio.Reader
	wait time.Duration
	err  error // the first error; every later step is skipped
	last string
}

func (c *chaosConn) send(line string) {
	if c.err == nil {
		c.conn.SetWriteDeadline(time.Now().Add(c.wait))
		_, c.err = io.WriteString(c.conn, line+"\r\n")
	}
}

// line reads the next line, or the first that starts with prefix.
func (c *chaosConn) line(prefix string) string {
	for c.err == nil {
		c.conn.SetReadDeadline(time.Now().Add(c.wait))
		var l string
		l, c.err = c.r.ReadString('\n')
		if c.err == nil {
			c.last = strings.TrimRight(l, "\r\n")
			if strings.HasPrefix(c.last, prefix) {
				return c.last
			}
		}
	}
	return ""
}

// closed reports whether the proxy has closed the connection, without
// sending anything more.
func (c *chaosConn) closed() bool {
	if c.err != nil {
		return false
	}
	c.conn.SetReadDeadline(time.Now().Add(c.wait))
	_, err := c.r.ReadByte()
	if err == nil {
		c.err = errors.New("more after the last reply")
	} else if !errors.Is(err, io.EOF) {
		c.err = err
	}
	return errors.Is(err, io.EOF)
}

// end returns how the dialogue ended when it did not go as it should: it
// was cut (the connection ended), or stuck, or went astray.
func (c *chaosConn) end() (string, string) {
	switch {
	case c.err == nil:
		return "unexpected", fmt.Sprintf("got %q", c.last)
	case errors.Is(c.err, os.ErrDeadlineExceeded):
		return "stuck", fmt.Sprintf("after %q: %v", c.last, c.err)
	case errors.Is(c.err, io.EOF), errors.Is(c.err, syscall.ECONNRESET), errors.Is(c.err, syscall.EPIPE):
		return endCut, fmt.Sprintf("after %q: %v", c.last, c.err)
	}
	return "unexpected", fmt.Sprintf("after %q: %v", c.last, c.err)
}

// abort resets the connection, and returns why when the dialogue had gone
// well so far.
func (c *chaosConn) abort(why string) (string, string) {
	if c.err != nil {
		return c.end()
	}
	reset(c.conn)
	return why, ""
}

// finish returns how a session that ended as want went: want when the
// dialogue had no error and the connection then closed.
func (c *chaosConn) finish(want string) (string, string) {
	if c.closed() {
		return want, ""
	}
	return c.end()
}

// logout ends a session still in the dialogue with the proxy, after a
// failed login: the proxy's last reply, then its close.
func (c *chaosConn) logout(proto int, why string) (string, string) {
	switch proto {
	case chaosIMAP:
		c.send("z LOGOUT")
		if c.line("* BYE") == "" || !strings.HasPrefix(c.line(""), "z OK") {
			return c.end()
		}
	case chaosPOP3:
		c.send("QUIT")
		if !strings.HasPrefix(c.line(""), "+OK") {
			return c.end()
		}
	default:
		c.send("QUIT")
		if !strings.HasPrefix(c.line(""), "221") {
			return c.end()
		}
	}
	return c.finish(why)
}

func (c *chaosConn) imap(s chaosScenario) (string, string) {
	c.line("* OK")
	c.send("a LOGIN " + s.user() + " secret")
	if s.client == clientAbort {
		return c.abort(endAborted)
	}
	switch reply := c.line("a "); reply {
	case "a NO [AUTHENTICATIONFAILED] Invalid login or password":
		return c.finish(endRefused)
	case "a NO [UNAVAILABLE] Temporary authentication failure", "a NO [UNAVAILABLE] Backend unavailable":
		return c.logout(chaosIMAP, endTemporary)
	case "a NO [AUTHENTICATIONFAILED] Authentication failed":
		return c.logout(chaosIMAP, endDenied)
	default:
		if !strings.HasPrefix(reply, "a OK") {
			return c.end()
		}
	}
	c.send("c1 SELECT INBOX")
	if !strings.HasPrefix(c.line("c1 "), "c1 OK") {
		return c.end()
	}
	if s.client == clientVanish {
		return c.abort(endVanished)
	}
	time.Sleep(s.hold)
	c.send("c2 NOOP")
	if !strings.HasPrefix(c.line("c2 "), "c2 OK") {
		return c.end()
	}
	c.send("c3 LOGOUT")
	if c.line("* BYE") == "" || !strings.HasPrefix(c.line("c3 "), "c3 OK") {
		return c.end()
	}
	return c.finish(endOK)
}

func (c *chaosConn) pop3(s chaosScenario) (string, string) {
	c.line("+OK")
	c.send("USER " + s.user())
	c.line("+OK")
	c.send("PASS secret")
	if s.client == clientAbort {
		return c.abort(endAborted)
	}
	switch reply := c.line(""); reply {
	case "-ERR Invalid login or password":
		return c.finish(endRefused)
	case "-ERR [SYS/TEMP] Temporary authentication failure", "-ERR [SYS/TEMP] Backend unavailable":
		return c.logout(chaosPOP3, endTemporary)
	case "-ERR Authentication failed":
		return c.logout(chaosPOP3, endDenied)
	default:
		if !strings.HasPrefix(reply, "+OK") {
			return c.end()
		}
	}
	c.send("STAT")
	if !strings.HasPrefix(c.line(""), "+OK") {
		return c.end()
	}
	if s.client == clientVanish {
		return c.abort(endVanished)
	}
	time.Sleep(s.hold)
	c.send("QUIT")
	if !strings.HasPrefix(c.line(""), "+OK") {
		return c.end()
	}
	return c.finish(endOK)
}

func (c *chaosConn) smtp(s chaosScenario, run *chaosRun) (string, string) {
	c.line("220 ")
	c.send("EHLO client.chaos.test")
	c.line("250 ")
	c.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+s.user()+"\x00secret")))
	if s.client == clientAbort {
		return c.abort(endAborted)
	}
	switch reply := c.line(""); reply {
	case "535 5.7.8 Invalid login or password":
		return c.finish(endRefused)
	case "451 4.3.0 Temporary authentication failure", "451 4.3.0 Backend unavailable":
		return c.logout(chaosSMTP, endTemporary)
	case "535 5.7.8 Authentication failed":
		return c.logout(chaosSMTP, endDenied)
	default:
		if !strings.HasPrefix(reply, "235 ") {
			return c.end()
		}
	}
	id := fmt.Sprintf("<s%d.%d@chaos.test>", s.id, s.seq)
	c.send("MAIL FROM:<" + s.user() + "@chaos.test>")
	c.line("250 ")
	c.send("RCPT TO:<b" + strconv.Itoa(s.id) + "@chaos.test>")
	c.line("250 ")
	c.send("DATA")
	c.line("354 ")
	if s.client == clientVanish {
		c.send("Message-ID: " + id + "\r\nSubject: chaos\r\n\r\nHalf a message")
		run.mu.Lock()
		run.abandoned[id] = true
		run.mu.Unlock()
		return c.abort(endVanished)
	}
	c.send("Message-ID: " + id + "\r\nSubject: chaos\r\n\r\nA message of the chaos test.\r\n.")
	if !strings.HasPrefix(c.line(""), "250 ") {
		return c.end()
	}
	run.mu.Lock()
	run.accepted[id] = true
	run.mu.Unlock()
	time.Sleep(s.hold)
	c.send("QUIT")
	if !strings.HasPrefix(c.line(""), "221 ") {
		return c.end()
	}
	return c.finish(endOK)
}
