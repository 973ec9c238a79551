// Command callback is the smallest program that embeds mailproxy with an
// authentication callback of its own instead of an auth_http service.
//
// Its callback reads a users file of "user:password:backend-host:port"
// lines, the stand-in for a program's own LDAP, SQL or OAuth lookup:
//
//	go run ./examples/callback -users users.txt -imap 127.0.0.1:1143 -pop3 127.0.0.1:1110
package main

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], nil); err != nil {
		log.Fatal(err)
	}
}

// account is one line of the users file.
type account struct{ password, backend string }

// directory is the callback's user database.
type directory map[string]account

// authenticate is the callback: check the password, pick the backend.
func (d directory) authenticate(_ context.Context, req *auth.Request) (*auth.Result, error) {
	a, ok := d[req.User]
	if !ok || req.Method != auth.MethodPlain && req.Method != auth.MethodLogin ||
		subtle.ConstantTimeCompare([]byte(a.password), []byte(req.Password)) != 1 {
		return &auth.Result{Error: "Invalid login or password", Wait: 2 * time.Second}, nil
	}
	return &auth.Result{Backend: a.backend}, nil
}

func readUsers(path string) (directory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := directory{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, rest, ok1 := strings.Cut(line, ":")
		pass, backend, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%s:%d: want user:password:host:port", path, n)
		}
		d[user] = account{pass, backend}
	}
	return d, sc.Err()
}

// run serves until ctx ends. started, when not nil, receives the proxy
// once it listens.
func run(ctx context.Context, args []string, started func(*mailproxy.Proxy)) error {
	fs := flag.NewFlagSet("callback", flag.ContinueOnError)
	users := fs.String("users", "users.txt", "users `file` of user:password:backend lines")
	imapAddr := fs.String("imap", "127.0.0.1:1143", "IMAP listen `address`")
	pop3Addr := fs.String("pop3", "127.0.0.1:1110", "POP3 listen `address`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := readUsers(*users)
	if err != nil {
		return err
	}
	core := session.Config{Auth: auth.AuthenticatorFunc(dir.authenticate)}
	p := &mailproxy.Proxy{Config: &mailproxy.Config{Servers: []mailproxy.ServerConfig{
		{Name: "imap", Listen: []mailproxy.ListenConfig{{Address: *imapAddr}}, Server: &imap.Server{Config: core}},
		{Name: "pop3", Listen: []mailproxy.ListenConfig{{Address: *pop3Addr}}, Server: &pop3.Server{Config: core}},
	}}}
	if err := p.Start(); err != nil {
		return err
	}
	if started != nil {
		started(p)
	}
	<-ctx.Done()
	p.Close()
	if err := p.Wait(); !errors.Is(err, mailproxy.ErrProxyClosed) {
		return err
	}
	return nil
}
