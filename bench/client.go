package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sessionTimeout bounds every session of the generator, so that a stuck
// proxy fails a round instead of hanging it.
const sessionTimeout = 30 * time.Second

// conn is the generator's side of a session.
type conn struct {
	net.Conn
	r *bufio.Reader
}

// segmentSize, when set (-mss), is the TCP maximum segment size that the
// generator's clients and backends announce, so that the proxies send
// them segments of that size, as on Ethernet, rather than loopback's
// 64 KiB.
var segmentSize int

// listenMSS listens on 127.0.0.1 with a free port, announcing
// segmentSize.
func listenMSS() (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		if segmentSize == 0 {
			return nil
		}
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, segmentSize)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
}

// sources are the loopback addresses clients connect from: one address
// pair gives only about 28 000 ports.
type sources []net.IP

func newSources(n int) sources {
	s := make(sources, max(n, 1))
	for i := range s {
		s[i] = net.IPv4(127, 0, byte(i/250), byte(1+i%250))
	}
	return s
}

// dial connects from the i-th source address, the port chosen at
// connect (IP_BIND_ADDRESS_NO_PORT): a port bound early would be taken
// for every destination at once.
func (s sources) dial(ctx context.Context, addr string, i int, tlsConf *tls.Config) (*conn, error) {
	return s.dialSize(ctx, addr, i, tlsConf, 4<<10)
}

// dialSize is dial with a read buffer of size bytes.
func (s sources) dialSize(ctx context.Context, addr string, i int, tlsConf *tls.Config, size int) (*conn, error) {
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: s[i%len(s)]},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				if serr == nil && segmentSize > 0 {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, segmentSize)
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		tc := tls.Client(c, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	return &conn{Conn: c, r: bufio.NewReaderSize(c, size)}, nil
}

func (c *conn) send(line string) error {
	_, err := io.WriteString(c.Conn, line+"\r\n")
	return err
}

func (c *conn) line() (string, error) {
	b, err := c.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// expect reads a line that must start with prefix.
func (c *conn) expect(prefix string) (string, error) {
	l, err := c.line()
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(l, prefix) {
		return l, fmt.Errorf("want %q, got %q", prefix, l)
	}
	return l, nil
}

// imapCommand sends a tagged command and reads up to its tagged reply,
// which must be OK.
func (c *conn) imapCommand(tag, cmd string) error {
	if err := c.send(tag + " " + cmd); err != nil {
		return err
	}
	return c.imapDone(tag, cmd)
}

func (c *conn) imapDone(tag, cmd string) error {
	for range 100 {
		l, err := c.line()
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return fmt.Errorf("IMAP %s: %q", strings.Fields(cmd)[0], l)
			}
			return nil
		}
	}
	return fmt.Errorf("IMAP %s: no tagged reply", strings.Fields(cmd)[0])
}

// imapLogin reads the greeting and logs in as user i.
func (c *conn) imapLogin(i int) error {
	if _, err := c.expect("* OK"); err != nil {
		return err
	}
	return c.imapCommand("a1", "LOGIN "+benchUser(i)+" "+benchPassword)
}

func (c *conn) pop3Command(cmd string) (string, error) {
	if err := c.send(cmd); err != nil {
		return "", err
	}
	l, err := c.line()
	if err == nil && !strings.HasPrefix(l, "+OK") {
		err = fmt.Errorf("POP3 %s: %q", strings.Fields(cmd)[0], l)
	}
	return l, err
}

func (c *conn) pop3Login(i int) error {
	if _, err := c.expect("+OK"); err != nil {
		return err
	}
	if _, err := c.pop3Command("USER " + benchUser(i)); err != nil {
		return err
	}
	_, err := c.pop3Command("PASS " + benchPassword)
	return err
}

// smtpReply reads a reply, multi-line ones included, which must have
// the code want.
func (c *conn) smtpReply(want int) error {
	for range 100 {
		l, err := c.line()
		if err != nil {
			return err
		}
		if len(l) < 3 {
			return fmt.Errorf("SMTP reply %q", l)
		}
		if len(l) > 3 && l[3] == '-' {
			continue
		}
		if code, _ := strconv.Atoi(l[:3]); code != want {
			return fmt.Errorf("SMTP: want %d, got %q", want, l)
		}
		return nil
	}
	return fmt.Errorf("SMTP reply too long")
}

func (c *conn) smtpCommand(cmd string, want int) error {
	if err := c.send(cmd); err != nil {
		return err
	}
	if err := c.smtpReply(want); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
	}
	return nil
}

func (c *conn) smtpLogin(i int) error {
	if err := c.smtpReply(220); err != nil {
		return err
	}
	if err := c.smtpCommand("EHLO client.bench.local", 250); err != nil {
		return err
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + benchUser(i) + "\x00" + benchPassword))
	return c.smtpCommand("AUTH PLAIN "+ir, 235)
}

// smallMessage is the message of a login session's SMTP transaction.
var smallMessage = string(makeMessage(1 << 10))

// loginSession is scenario 1's session of proto: connect, greeting,
// login through auth_http, a command or a small transaction, logout.
func loginSession(ctx context.Context, src sources, addr, proto string, i int, tlsConf *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, sessionTimeout)
	defer cancel()
	c, err := src.dial(ctx, addr, i, tlsConf)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(sessionTimeout))
	switch proto {
	case "imap":
		if err := c.imapLogin(i); err != nil {
			return err
		}
		if err := c.imapCommand("a2", "NOOP"); err != nil {
			return err
		}
		return c.imapCommand("a3", "LOGOUT")
	case "pop3":
		if err := c.pop3Login(i); err != nil {
			return err
		}
		if _, err := c.pop3Command("STAT"); err != nil {
			return err
		}
		_, err := c.pop3Command("QUIT")
		return err
	case "smtp":
		if err := c.smtpLogin(i); err != nil {
			return err
		}
		if err := c.smtpCommand("MAIL FROM:<"+benchUser(i)+"@bench.local>", 250); err != nil {
			return err
		}
		if err := c.smtpCommand("RCPT TO:<rcpt@bench.local>", 250); err != nil {
			return err
		}
		if err := c.smtpCommand("DATA", 354); err != nil {
			return err
		}
		if _, err := io.WriteString(c.Conn, smallMessage+".\r\n"); err != nil {
			return err
		}
		if err := c.smtpReply(250); err != nil {
			return fmt.Errorf("end of DATA: %w", err)
		}
		return c.smtpCommand("QUIT", 221)
	}
	return fmt.Errorf("unknown protocol %q", proto)
}
