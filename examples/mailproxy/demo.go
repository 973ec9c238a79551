package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// The demo account.
const demoUser, demoPassword = "demo", "demo"

// welcome is the message the demo mailbox holds from the start.
const welcome = "From: demo@example.org\r\nSubject: Welcome\r\n\r\nHello from the mailproxy demo.\r\n"

// Limits of the demo mailbox, which lives in memory and may be published in
// a container: up to 100 messages sent over SMTP in a run, of up to 1 MiB.
const (
	demoMaxMessages = 100
	demoMaxBytes    = 1 << 20
)

// demo is the embedded default: in-process backends and a proxy in front
// of them, needing nothing from outside.
type demo struct {
	imap *mailtest.IMAPServer
	pop3 *mailtest.POP3Server
	smtp *mailtest.SMTPServer
	// addr and ports are where the proxy listens: an IP address, and the
	// IMAP, POP3 and SMTP ports.
	addr  string
	ports [3]int
	log   *slog.Logger
	// sent counts the messages SMTP has delivered to the mailbox.
	sent atomic.Int32
}

// startDemo starts the demo backends: the demo mailbox, in IMAP and POP3,
// holds the welcome message and every message sent over SMTP.
func startDemo(addr string, ports [3]int, log *slog.Logger) (*demo, error) {
	users := []mailtest.User{{Name: demoUser, Password: demoPassword}}
	backendLog := slog.New(slog.DiscardHandler)
	d := &demo{addr: addr, ports: ports, log: log}
	var err error
	if d.imap, err = mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: backendLog}); err != nil {
		return nil, err
	}
	if d.pop3, err = mailtest.StartPOP3(mailtest.POP3Options{Users: users, Logger: backendLog}); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.deliver([]byte(welcome)); err != nil {
		d.Close()
		return nil, err
	}
	deliver := func(m mailtest.Message) error {
		if d.sent.Add(1) > demoMaxMessages {
			return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "The demo mailbox is full"}
		}
		return d.deliver(m.Data)
	}
	d.smtp, err = mailtest.StartSMTP(mailtest.SMTPOptions{
		Users: users, Domain: "backend.demo", MaxMessageBytes: demoMaxBytes, Deliver: deliver, Logger: backendLog,
	})
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// deliver puts a message in the demo mailbox, whoever it is addressed to.
func (d *demo) deliver(msg []byte) error {
	return errors.Join(d.imap.AddMessage(demoUser, msg), d.pop3.AddMessage(demoUser, msg))
}

// Close stops the backends.
func (d *demo) Close() error {
	var errs []error
	if d.imap != nil {
		errs = append(errs, d.imap.Close())
	}
	if d.pop3 != nil {
		errs = append(errs, d.pop3.Close())
	}
	if d.smtp != nil {
		errs = append(errs, d.smtp.Close())
	}
	return errors.Join(errs...)
}

// authenticate is the demo's Authenticator: a Go callback that checks the
// demo account and routes each protocol to its backend.
func (d *demo) authenticate(_ context.Context, req *auth.Request) (*auth.Result, error) {
	if req.User != demoUser || req.Password != demoPassword {
		return &auth.Result{Error: "Invalid login or password"}, nil
	}
	backends := map[string]string{"imap": d.imap.Addr, "pop3": d.pop3.Addr, "smtp": d.smtp.Addr}
	return &auth.Result{Backend: backends[req.Protocol]}, nil
}

// config builds the demo proxy in Go, as a program embedding the library
// would.
func (d *demo) config() (*mailproxy.Config, error) {
	cert, err := selfSigned("mailproxy.demo")
	if err != nil {
		return nil, err
	}
	core := session.Config{ServerName: "mailproxy.demo", Auth: auth.AuthenticatorFunc(d.authenticate), Logger: d.log,
		TLS: &session.TLS{Config: &tls.Config{Certificates: []tls.Certificate{cert}}, StartTLS: session.StartTLSOn}}
	listen := func(port int) []mailproxy.ListenConfig {
		return []mailproxy.ListenConfig{{Address: net.JoinHostPort(d.addr, strconv.Itoa(port))}}
	}
	return &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "demo imap", Listen: listen(d.ports[0]), Server: &imap.Server{Config: core}},
		{Name: "demo pop3", Listen: listen(d.ports[1]), Server: &pop3.Server{Config: core}},
		{Name: "demo smtp", Listen: listen(d.ports[2]), Server: &smtp.Server{Config: core, Capabilities: []string{"8BITMIME"}}},
	}}, nil
}

// selfSigned makes the demo's certificate, for STARTTLS: a new ECDSA key
// and a self-signed certificate for name, localhost and 127.0.0.1, valid
// for a day. Clients must be told not to verify it (curl -k).
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, err
}

// banner tells a person where the demo listens and how to try it. Every
// command it prints works as printed in a POSIX shell (the test runs them).
func (d *demo) banner(w io.Writer, p *mailproxy.Proxy) {
	addrs := make([]net.Addr, 3)
	for i := range addrs {
		addrs[i] = p.ServerAddrs(i)[0]
	}
	fmt.Fprintf(w, "mailproxy demo: proxying to in-process backends\n  IMAP  %s\n  POP3  %s\n  SMTP  %s\n  login %s / %s\n",
		addrs[0], addrs[1], addrs[2], demoUser, demoPassword)
	imapAt, pop3At, smtpAt := reachable(addrs[0]), reachable(addrs[1]), reachable(addrs[2])
	login := demoUser + ":" + demoPassword
	fmt.Fprintf(w, `try:
  curl 'imap://%[1]s/INBOX;UID=1' -u %[4]s
  curl pop3://%[2]s/1 -u %[4]s
  printf 'Subject: Hello\r\n\r\nSent through the proxy.\r\n' | curl smtp://%[3]s --mail-from demo@example.org --mail-rcpt demo@example.org -u %[4]s -T -
  curl 'imap://%[1]s/INBOX;UID=2' -u %[4]s
mail sent over SMTP lands in the demo mailbox (IMAP UID 2, POP3 message 2)
add -v to see the dialogue; STARTTLS (STLS) is offered with a self-signed certificate: add --ssl-reqd -k
stop with Ctrl-C
`, imapAt, pop3At, smtpAt, login)
}

// reachable is the address a client on this machine dials for a listening
// address: the loopback address for a wildcard one (-demo-addr 0.0.0.0).
func reachable(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	loopback := net.IPv4(127, 0, 0, 1)
	if tcp.IP.To4() == nil {
		loopback = net.IPv6loopback
	}
	return net.JoinHostPort(loopback.String(), strconv.Itoa(tcp.Port))
}
