// Command auth is the authentication service of the compose example: a
// small HTTP server that speaks nginx's auth_http protocol, as a mail
// proxy's auth service does, whether the proxy is mailproxy or nginx.
//
// It checks each login against a Dovecot passwd-file (the file Dovecot
// itself reads, so the two agree) and sends the proxy to the backend of the
// protocol: Dovecot for IMAP and POP3, Postfix for SMTP. Backend host names
// are resolved on every request and sent as IP addresses, as nginx
// requires.
//
//	auth -listen :9000 -users /etc/mail/users -imap dovecot:143 -pop3 dovecot:110 -smtp postfix:25
package main

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], nil); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. started, when not nil, receives the address
// the service listens on.
func run(ctx context.Context, args []string, started func(net.Addr)) error {
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	listen := fs.String("listen", ":9000", "`address` to listen on")
	usersFile := fs.String("users", "/etc/mail/users", "Dovecot passwd-`file` with {PLAIN} passwords")
	var s service
	fs.StringVar(&s.backends.imap, "imap", "dovecot:143", "IMAP backend `host:port`")
	fs.StringVar(&s.backends.pop3, "pop3", "dovecot:110", "POP3 backend `host:port`")
	fs.StringVar(&s.backends.smtp, "smtp", "postfix:25", "SMTP backend `host:port`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, addr := range []string{s.backends.imap, s.backends.pop3, s.backends.smtp} {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("backend %q: %w", addr, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("backend %q: invalid port", addr)
		}
	}
	users, err := readUsers(*usersFile)
	if err != nil {
		return err
	}
	s.users = users
	s.log = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: &s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	s.log.Info("auth service listening", "addr", ln.Addr().String(), "users", len(users))
	if started != nil {
		started(ln.Addr())
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// service answers the proxy's auth_http requests.
type service struct {
	users    map[string]string // name -> password
	backends struct{ imap, pop3, smtp string }
	log      *slog.Logger
	// lookup resolves a backend's host name; nil means net.DefaultResolver.
	lookup func(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Replies to a refused login. nginx passes Auth-Status to the client, and
// waits Auth-Wait seconds before letting it try again.
const (
	invalidLogin = "Invalid login or password"
	tempFailure  = "Temporary server problem, try again later"
	retryAfter   = "3"
)

// ServeHTTP answers one login. The answer is always 200 OK: its headers
// say whether the login is accepted (Auth-Status: OK) and where to.
func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, password := r.Header.Get("Auth-User"), r.Header.Get("Auth-Pass")
	method, proto := r.Header.Get("Auth-Method"), r.Header.Get("Auth-Protocol")
	log := s.log.With("user", user, "protocol", proto, "method", method, "client", r.Header.Get("Client-IP"))
	h := w.Header()
	if (method != "plain" && method != "login") || !s.check(user, password) {
		log.Info("login refused")
		h.Set("Auth-Status", invalidLogin)
		h.Set("Auth-Wait", retryAfter)
		return
	}
	backend, err := s.backend(r.Context(), proto)
	if err != nil {
		log.Error("no backend", "err", err)
		h.Set("Auth-Status", tempFailure)
		h.Set("Auth-Error-Code", "451 4.3.0") // SMTP's reply code
		h.Set("Auth-Wait", retryAfter)
		return
	}
	log.Info("login accepted", "backend", backend)
	host, port, _ := net.SplitHostPort(backend)
	h.Set("Auth-Status", "OK")
	h.Set("Auth-Server", host)
	h.Set("Auth-Port", port)
}

// check reports whether password is user's.
func (s *service) check(user, password string) bool {
	want, ok := s.users[user]
	return ok && subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
}

// backend returns the IP address and port of the protocol's backend.
func (s *service) backend(ctx context.Context, proto string) (string, error) {
	var addr string
	switch proto {
	case "imap":
		addr = s.backends.imap
	case "pop3":
		addr = s.backends.pop3
	case "smtp":
		addr = s.backends.smtp
	default:
		return "", fmt.Errorf("unknown protocol %q", proto)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if net.ParseIP(host) != nil {
		return addr, nil
	}
	lookup := s.lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupIPAddr
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return "", err
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("%s: no address", host)
	}
	return net.JoinHostPort(ips[0].IP.String(), port), nil
}

// readUsers reads a Dovecot passwd-file: "name:{PLAIN}password", then
// Dovecot's other fields, which are ignored. Only {PLAIN} passwords can be
// checked here, since the proxy sends the password the client gave.
func readUsers(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	users := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, ":")
		password, _, _ := strings.Cut(rest, ":")
		password, plain := strings.CutPrefix(password, "{PLAIN}")
		if name == "" || !plain {
			return nil, fmt.Errorf("%s:%d: want name:{PLAIN}password", path, n)
		}
		users[name] = password
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s: no users", path)
	}
	return users, nil
}
