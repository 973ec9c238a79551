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
	"time"

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

// demo is the embedded default: in-process backends and a proxy in front
// of them, needing nothing from outside.
type demo struct {
	imap *mailtest.IMAPServer
	pop3 *mailtest.POP3Server
	smtp *mailtest.SMTPServer
	// ports are where the proxy listens: IMAP, POP3, SMTP.
	ports [3]int
	log   *slog.Logger
}

// startDemo starts the demo backends.
func startDemo(ports [3]int, log *slog.Logger) (*demo, error) {
	users := []mailtest.User{{Name: demoUser, Password: demoPassword}}
	backendLog := slog.New(slog.DiscardHandler)
	d := &demo{ports: ports, log: log}
	var err error
	if d.imap, err = mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: backendLog}); err != nil {
		return nil, err
	}
	if d.pop3, err = mailtest.StartPOP3(mailtest.POP3Options{Users: users, Logger: backendLog}); err != nil {
		d.Close()
		return nil, err
	}
	d.pop3.AddMessage(demoUser, []byte("From: demo@example.org\r\nSubject: Welcome\r\n\r\nHello from the mailproxy demo.\r\n"))
	if d.smtp, err = mailtest.StartSMTP(mailtest.SMTPOptions{Users: users, Domain: "backend.demo", Logger: backendLog}); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
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
		return []mailproxy.ListenConfig{{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}}
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

// banner tells a person where the demo listens and how to try it.
func (d *demo) banner(w io.Writer, p *mailproxy.Proxy) {
	addr := func(i int) string { return p.ServerAddrs(i)[0].String() }
	fmt.Fprintf(w, `mailproxy demo: proxying to in-process backends
  IMAP  %s
  POP3  %s
  SMTP  %s
  login %s / %s
try:
  curl -v imap://%s/ -u %s:%s
  curl -v pop3://%s/1 -u %s:%s
  curl -v smtp://%s/ --mail-from demo@example.org --mail-rcpt demo@example.org -T message.txt -u %s:%s
STARTTLS (STLS) is offered with a self-signed certificate: add --ssl-reqd -k
stop with Ctrl-C
`, addr(0), addr(1), addr(2), demoUser, demoPassword,
		addr(0), demoUser, demoPassword, addr(1), demoUser, demoPassword, addr(2), demoUser, demoPassword)
}
