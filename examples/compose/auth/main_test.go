package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/config"
	mpimap "github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/smtp"
)

// The service answers as nginx's auth_http protocol asks, over HTTP.
func TestService(t *testing.T) {
	s := &service{
		users: map[string]string{"demo": "demo", "bob": "pass word"},
		log:   slog.New(slog.DiscardHandler),
		lookup: func(_ context.Context, host string) ([]net.IPAddr, error) {
			if host == "dovecot" {
				return []net.IPAddr{{IP: net.IPv4(172, 28, 53, 20)}}, nil
			}
			return nil, errors.New("no such host")
		},
	}
	s.backends.imap, s.backends.pop3, s.backends.smtp = "dovecot:143", "dovecot:110", "postfix:25"
	srv := httptest.NewServer(s)
	defer srv.Close()

	tests := []struct {
		name  string
		req   map[string]string
		reply map[string]string // every Auth-* header of the answer
	}{
		{"imap", map[string]string{"Auth-User": "demo", "Auth-Pass": "demo", "Auth-Method": "plain", "Auth-Protocol": "imap"},
			map[string]string{"Auth-Status": "OK", "Auth-Server": "172.28.53.20", "Auth-Port": "143"}},
		{"pop3 with a space in the password", map[string]string{"Auth-User": "bob", "Auth-Pass": "pass word", "Auth-Method": "plain", "Auth-Protocol": "pop3"},
			map[string]string{"Auth-Status": "OK", "Auth-Server": "172.28.53.20", "Auth-Port": "110"}},
		{"bad password", map[string]string{"Auth-User": "demo", "Auth-Pass": "nope", "Auth-Method": "plain", "Auth-Protocol": "imap"},
			map[string]string{"Auth-Status": "Invalid login or password", "Auth-Wait": "3"}},
		{"unknown user", map[string]string{"Auth-User": "eve", "Auth-Pass": "demo", "Auth-Method": "login", "Auth-Protocol": "imap"},
			map[string]string{"Auth-Status": "Invalid login or password", "Auth-Wait": "3"}},
		{"method without a password", map[string]string{"Auth-User": "demo", "Auth-Pass": "demo", "Auth-Method": "cram-md5", "Auth-Protocol": "imap"},
			map[string]string{"Auth-Status": "Invalid login or password", "Auth-Wait": "3"}},
		{"backend not resolved", map[string]string{"Auth-User": "demo", "Auth-Pass": "demo", "Auth-Method": "login", "Auth-Protocol": "smtp"},
			map[string]string{"Auth-Status": "Temporary server problem, try again later", "Auth-Error-Code": "451 4.3.0", "Auth-Wait": "3"}},
		{"unknown protocol", map[string]string{"Auth-User": "demo", "Auth-Pass": "demo", "Auth-Method": "plain", "Auth-Protocol": "nntp"},
			map[string]string{"Auth-Status": "Temporary server problem, try again later", "Auth-Error-Code": "451 4.3.0", "Auth-Wait": "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/auth", nil)
			for k, v := range tt.req {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := map[string]string{}
			for k := range resp.Header {
				if strings.HasPrefix(k, "Auth-") {
					got[k] = resp.Header.Get(k)
				}
			}
			if resp.StatusCode != http.StatusOK || !equalMaps(got, tt.reply) {
				t.Errorf("status %d, headers %v; want 200 and %v", resp.StatusCode, got, tt.reply)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestReadUsers(t *testing.T) {
	tests := []struct {
		name, file string
		want       map[string]string
		wantErr    string
	}{
		{"passwd-file", "# comment\n\ndemo:{PLAIN}demo\nbob:{PLAIN}pass word:1000:1000::/home/bob\n",
			map[string]string{"demo": "demo", "bob": "pass word"}, ""},
		{"hashed password", "demo:{SHA512-CRYPT}$6$x\n", nil, ":1: want name:{PLAIN}password"},
		{"no password", "demo\n", nil, ":1: want name:{PLAIN}password"},
		{"empty", "# nobody\n", nil, "no users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users")
			os.WriteFile(path, []byte(tt.file), 0o600)
			got, err := readUsers(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !equalMaps(got, tt.want) {
				t.Fatalf("readUsers = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// The compose example's mailproxy.conf loads, as -t loads it, and says what
// compose.yaml and the README count on.
func TestComposeConfig(t *testing.T) {
	cfg, err := config.Load("../mailproxy.conf", config.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.Proxy.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		addr  string
		proto string
	}{{"1143", "imap"}, {"1110", "pop3"}, {"1025", "smtp"}}
	if len(cfg.Proxy.Servers) != len(want) {
		t.Fatalf("%d servers, want %d", len(cfg.Proxy.Servers), len(want))
	}
	for i, sc := range cfg.Proxy.Servers {
		var core any
		var proto string
		switch s := sc.Server.(type) {
		case *mpimap.Server:
			core, proto = s.Config.Auth, "imap"
		case *pop3.Server:
			core, proto = s.Config.Auth, "pop3"
		case *smtp.Server:
			core, proto = s.Config.Auth, "smtp"
			if s.DisableXClient {
				t.Error("smtp: xclient is off; Postfix is to learn the client from it")
			}
		}
		if len(sc.Listen) != 1 || sc.Listen[0].Address != want[i].addr || proto != want[i].proto {
			t.Errorf("server %d: %s on %v, want %s on %s", i, proto, sc.Listen, want[i].proto, want[i].addr)
		}
		if h, ok := core.(*auth.HTTP); !ok || h.URL != "auth:9000/auth" {
			t.Errorf("server %d: authenticator %#v, want auth_http auth:9000/auth", i, core)
		}
	}
	if _, err := readUsers("../users"); err != nil {
		t.Errorf("the compose users file: %v", err)
	}
}

// The whole chain without Docker: the compose mailproxy.conf, its auth
// service and users file, with in-process backends where compose has
// Dovecot and Postfix, and real clients. Only the addresses are changed:
// everything listens on 127.0.0.1 with ports the kernel picks.
func TestComposeChain(t *testing.T) {
	users := []mailtest.User{{Name: "demo", Password: "demo"}}
	quiet := slog.New(slog.DiscardHandler)
	imapBE, err := mailtest.StartIMAP(mailtest.IMAPOptions{Users: users, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer imapBE.Close()
	pop3BE, err := mailtest.StartPOP3(mailtest.POP3Options{Users: users, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pop3BE.Close()
	smtpBE, err := mailtest.StartSMTP(mailtest.SMTPOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer smtpBE.Close()
	msg := []byte("Subject: compose\r\n\r\nthrough the chain\r\n")
	if err := imapBE.AddMessage("demo", msg); err != nil {
		t.Fatal(err)
	}
	if err := pop3BE.AddMessage("demo", msg); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	authAddr := make(chan net.Addr, 1)
	authDone := make(chan error, 1)
	go func() {
		authDone <- run(ctx, []string{"-listen", "127.0.0.1:0", "-users", "../users",
			"-imap", imapBE.Addr, "-pop3", pop3BE.Addr, "-smtp", smtpBE.Addr}, func(a net.Addr) { authAddr <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-authAddr:
	case err := <-authDone:
		t.Fatalf("auth service: %v", err)
	}

	src, err := os.ReadFile("../mailproxy.conf")
	if err != nil {
		t.Fatal(err)
	}
	src = regexp.MustCompile(`(?m)^(\s*auth_http\s+)auth:9000/auth;`).ReplaceAll(src, []byte("${1}"+addr.String()+"/auth;"))
	src = regexp.MustCompile(`(?m)^(\s*listen\s+)\d+;`).ReplaceAll(src, []byte("${1}127.0.0.1:0;"))
	cfg, err := config.LoadBytes("compose-chain.conf", src, "..", config.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	p := &mailproxy.Proxy{Config: cfg.Proxy, Logger: quiet}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// IMAP: LOGIN, then the backend's message.
	ic, err := imapclient.DialInsecure(p.ServerAddrs(0)[0].String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("demo", "nope").Wait(); err == nil || !strings.Contains(err.Error(), "Invalid login or password") {
		t.Errorf("IMAP login with a bad password: %v", err)
	}
	if err := ic.Login("demo", "demo").Wait(); err != nil {
		t.Fatalf("IMAP login: %v", err)
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{}
	bufs, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(bufs) != 1 || !bytes.Equal(bufs[0].FindBodySection(section), msg) {
		t.Errorf("IMAP fetch: %v, %v", bufs, err)
	}

	// POP3: USER and PASS, then RETR 1.
	pc, err := textproto.Dial("tcp", p.ServerAddrs(1)[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, cmd := range []string{"", "USER demo", "PASS demo", "RETR 1"} {
		if cmd != "" {
			pc.PrintfLine("%s", cmd)
		}
		if line, err := pc.ReadLine(); err != nil || !strings.HasPrefix(line, "+OK") {
			t.Fatalf("POP3 %q: %q, %v", cmd, line, err)
		}
	}
	if lines, err := pc.ReadDotLines(); err != nil || !slices.Contains(lines, "through the chain") {
		t.Errorf("POP3 RETR 1: %q, %v", lines, err)
	}

	// SMTP: AUTH, then the mail reaches the backend.
	sc, err := gosmtp.Dial(p.ServerAddrs(2)[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Auth(sasl.NewPlainClient("", "demo", "demo")); err != nil {
		t.Fatalf("SMTP AUTH: %v", err)
	}
	if err := sc.SendMail("demo@example.org", []string{"demo@example.org"}, bytes.NewReader(msg)); err != nil {
		t.Fatalf("SMTP send: %v", err)
	}
	if got := smtpBE.Messages(); len(got) != 1 || !bytes.Equal(got[0].Data, msg) || got[0].To[0] != "demo@example.org" {
		t.Errorf("the SMTP backend received %+v", got)
	}

	wantLogins := map[string][]mailtest.Login{
		"IMAP": {{User: "demo", Method: "LOGIN", OK: true}},
		"POP3": {{User: "demo", Method: "USER", OK: true}},
	}
	for name, got := range map[string][]mailtest.Login{"IMAP": imapBE.Logins(), "POP3": pop3BE.Logins()} {
		if !slices.Equal(got, wantLogins[name]) {
			t.Errorf("%s backend logins %v, want %v", name, got, wantLogins[name])
		}
	}
	cancel()
	if err := <-authDone; err != nil {
		t.Errorf("auth service: %v", err)
	}
}
