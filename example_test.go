package mailproxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/session"
)

// A proxy built in Go: one IMAP server block, with a callback deciding who
// logs in and where their mailbox lives.
func ExampleProxy() {
	route := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) (*auth.Result, error) {
		if req.User != "alice" || req.Password != "secret" {
			return &auth.Result{Error: "Invalid login or password"}, nil
		}
		return &auth.Result{Backend: "10.0.0.7:143"}, nil
	})
	p := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name:   "imap",
		Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0", KeepAlive: mailproxy.On}},
		Server: &imap.Server{
			Config:       session.Config{ServerName: "mail.example.org", Auth: route},
			Capabilities: []string{"IMAP4rev1", "IDLE"},
		},
	}}}}
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	printGreeting(p.ServerAddrs(0)[0].String())
	// Output: * OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] IMAP4 ready
}

// printGreeting connects to addr and prints the first line it gets.
func printGreeting(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	greeting, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(greeting)
}

// Reload replaces the configuration while sessions go on.
func ExampleProxy_Reload() {
	cfg := func(caps ...string) *mailproxy.Config {
		return &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
			Name:   "imap",
			Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}},
			Server: &imap.Server{Capabilities: caps},
		}}}
	}
	p := &mailproxy.Proxy{Config: cfg("IMAP4rev1")}
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	before := p.ServerAddrs(0)[0]
	if err := p.Reload(context.Background(), cfg("IMAP4rev1", "IDLE")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("same socket:", before.String() == p.ServerAddrs(0)[0].String())
	// Output: same socket: true
}

// Listen opens the sockets, a port below 1024 too, while the program is
// root; Start serves them once it is not: no session runs as root.
func ExampleProxy_Listen() {
	p := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name:   "imap",
		Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}},
		Server: &imap.Server{Capabilities: []string{"IMAP4rev1"}},
	}}}}
	if err := p.Listen(); err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	// Here the program gives up root (syscall.Setgid, syscall.Setuid).
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	printGreeting(p.ServerAddrs(0)[0].String())
	// Output: * OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] IMAP4 ready
}

// lookupCertificate stands for a program's certificate store.
func lookupCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return nil, fmt.Errorf("no certificate for %q in this example", hello.ServerName)
}

// TLS: STARTTLS required before any login on 143 (starttls only), implicit
// TLS on 993 (listen 993 ssl), and client certificates checked when given
// (ssl_verify_client optional).
func ExampleProxy_tls() {
	p := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{{
		Name:   "imap",
		Listen: []mailproxy.ListenConfig{{Address: "127.0.0.1:0"}, {Address: "127.0.0.1:0", SSL: true}},
		Server: &imap.Server{Config: session.Config{TLS: &session.TLS{
			Config:   &tls.Config{GetCertificate: lookupCertificate},
			StartTLS: session.StartTLSOnly,
			Verify:   session.VerifyOptional,
		}}},
	}}}}
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	printGreeting(p.ServerAddrs(0)[0].String())
	// Output: * OK [CAPABILITY IMAP4 IMAP4rev1 UIDPLUS STARTTLS LOGINDISABLED] IMAP4 ready
}
