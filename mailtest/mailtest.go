// Package mailtest runs IMAP, POP3 and SMTP servers in the current process,
// in the manner of net/http/httptest: a program that embeds mailproxy can
// test its Authenticator and its routing against real backends without
// installing Dovecot or Postfix, and the demo of the example binary proxies
// to them.
//
// Each server listens on 127.0.0.1 with a port picked by the kernel (its
// Addr), keeps its users and mail in memory, records what it was sent
// (Logins, and SMTPServer.Messages) and stops all of its goroutines in
// Close. They speak enough of their protocol for a mail client or a proxy:
// IMAP through go-imap's in-memory server, POP3 (RFC 1939 with CAPA, SASL
// PLAIN and APOP) of our own, SMTP through go-smtp. None of them offers
// TLS: the proxy's TLS is towards the client.
package mailtest

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
)

// User is an account known to a test server.
type User struct {
	// Name is the login name, matched exactly.
	Name string
	// Password is the password, in clear: the servers check it as given.
	Password string
}

// Login is one login attempt a server has answered.
type Login struct {
	// User is the name the client gave.
	User string
	// Method is the command or mechanism used: IMAP "LOGIN" or
	// "AUTHENTICATE PLAIN", POP3 "USER", "APOP" or "AUTH PLAIN", SMTP
	// "AUTH PLAIN".
	Method string
	// OK reports whether the server accepted the login.
	OK bool
}

// loginLog records the logins of one server; the zero value is ready.
type loginLog struct {
	mu     sync.Mutex
	logins []Login
}

func (l *loginLog) add(user, method string, ok bool) {
	l.mu.Lock()
	l.logins = append(l.logins, Login{User: user, Method: method, OK: ok})
	l.mu.Unlock()
}

// list returns a copy of the logins, oldest first.
func (l *loginLog) list() []Login {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.logins)
}

// listenLocal opens a TCP listener on a free loopback port.
func listenLocal() (*trackingListener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &trackingListener{Listener: ln, conns: make(map[net.Conn]struct{})}, nil
}

// trackingListener remembers the connections it hands out, so that a server
// whose library does not wait for its handlers can still cut every connection
// when it shuts down.
type trackingListener struct {
	net.Listener

	// onAccept, if set, runs in the accepting goroutine before Accept returns.
	onAccept func()

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Accept waits for the next connection and records it.
func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	if l.onAccept != nil {
		l.onAccept()
	}
	return tc, nil
}

// closeConns closes every connection accepted so far and not yet closed.
func (l *trackingListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.(*trackedConn).Conn.Close()
	}
	clear(l.conns)
}

// trackedConn forgets itself in its listener when closed.
type trackedConn struct {
	net.Conn
	l *trackingListener
}

// Close closes the connection.
func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// printfLogger turns the Printf-style error logs of the server libraries into
// slog records.
type printfLogger struct {
	log   *slog.Logger
	proto string
}

// Printf logs one message of the library.
func (p printfLogger) Printf(format string, v ...any) {
	p.log.Warn("mailtest: server error", "proto", p.proto, "detail", fmt.Sprintf(format, v...))
}

// Println logs one message of the library.
func (p printfLogger) Println(v ...any) {
	p.log.Warn("mailtest: server error", "proto", p.proto, "detail", fmt.Sprint(v...))
}

// orDefault returns log, or slog.Default() when log is nil.
func orDefault(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.Default()
	}
	return log
}
