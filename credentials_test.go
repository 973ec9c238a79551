package mailproxy_test

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/config"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/mailtest"
	"github.com/mailproxy/mailproxy/metrics"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// The secrets of TestCredentialsNeverShown, each one no log line, metric
// or message would hold by chance.
const (
	clientPassword  = "Pw-9f3Kq-only-in-the-login"
	backendPassword = "AuthPass-7xQ2-of-the-service" // the service's Auth-Pass
	bearerToken     = "Bearer-4Lm8-of-auth-http-header"
	keyPassphrase   = "KeyPass-2Zr5-of-the-password-file"
)

// The users of the matrix, each an outcome.
var credentialsUsers = []struct {
	name string
	want [3]string // the reply to the credentials: IMAP, POP3, SMTP
}{
	{"alice", [3]string{"a OK", "+OK", "235 "}},                                   // logged in
	{"mallory", [3]string{"a NO", "-ERR", "535 "}},                                // refused
	{"broken", [3]string{"a NO [UNAVAILABLE]", "-ERR [SYS/TEMP]", "451 4.3.0"}},   // the service answers 500
	{"garbled", [3]string{"a NO [UNAVAILABLE]", "-ERR [SYS/TEMP]", "451 4.3.0"}},  // a header line without a colon, holding the password
	{"echoed", [3]string{"a NO [UNAVAILABLE]", "-ERR [SYS/TEMP]", "451 4.3.0"}},   // the service sends the request back
	{"tattler", [3]string{"a NO", "-ERR", "535 "}},                                // the service's refusal quotes the password
	{"parrot", [3]string{"a NO you sent", "-ERR you sent", "535 5.7.8 you sent"}}, // the backend quotes the login it refuses
	{"panic", [3]string{"<closed>", "<closed>", "<closed>"}},                      // the Authenticator panics
}

// Every protocol and login method, with every outcome above, at debug
// level, with metrics, TLS client certificates, an encrypted key and an
// auth_http_header bearer token, all from a configuration file: no log
// line (nginx's lines and JSON lines), no metric, no reply to the client
// and no error holds a password, a SASL response, the service's
// Auth-Pass, the bearer token or the key, whatever form it takes.
func TestCredentialsNeverShown(t *testing.T) {
	w := newCredentialsWorld(t)
	for _, format := range []string{"nginx", "json"} {
		t.Run(format, func(t *testing.T) {
			logs, scrape := w.run(t, format)
			for _, want := range []string{"client logged in", "client login failed", "authentication unavailable", "auth http failed",
				"backend login failed", "backend session failed", "panic serving a session", "TLS handshake done"} {
				if !strings.Contains(logs, want) {
					t.Fatalf("the logs lack %q, which this test looks through:\n%s", want, logs)
				}
			}
			if !strings.Contains(scrape, "mailproxy_logins_total") {
				t.Fatalf("the scrape lacks the login counts:\n%s", scrape)
			}
			w.refuseSecrets(t, "a log line", logs)
			w.refuseSecrets(t, "the metrics", scrape)
		})
	}
	t.Run("errors", func(t *testing.T) {
		for what, err := range w.errorStrings(t) {
			w.refuseSecrets(t, what, err)
		}
	})
}

// credentialsWorld is what the matrix runs against: the backends, the auth
// service, the files of the configuration, and every secret, in every
// form, that the clients sent.
type credentialsWorld struct {
	dir       string
	service   *httptest.Server
	ca        *testutil.Cert
	client    tls.Certificate
	keyPEM    []byte // the server's key, unencrypted
	secretsMu sync.Mutex
	secrets   []string // every secret in each of its forms
	raw       []string // every secret as it is
}

func newCredentialsWorld(t *testing.T) *credentialsWorld {
	w := &credentialsWorld{dir: t.TempDir(), ca: testutil.NewCA(t, "credentials CA")}
	server := w.ca.Issue(t, testutil.CertOptions{})
	w.client = w.ca.Issue(t, testutil.CertOptions{Client: true, Subject: pkix.Name{CommonName: "alice"}}).TLS()
	w.keyPEM = server.KeyPEM()
	w.write(t, "server.crt", server.CertPEM())
	w.write(t, "server.key", server.EncryptedKeyPEM(t, keyPassphrase, testutil.PBES2AES256))
	w.write(t, "ca.crt", w.ca.CertPEM())
	w.write(t, "passwords", []byte("not-this-one\n"+keyPassphrase+"\n"))
	w.addSecrets(clientPassword, backendPassword, bearerToken, keyPassphrase)
	for _, line := range strings.Split(string(w.keyPEM)+string(w.read(t, "server.key")), "\n") {
		if len(line) == 64 { // a line of a key's base64 body
			w.addSecrets(line)
		}
	}

	b := startBackendsFor(t, []mailtest.User{{Name: "alice", Password: backendPassword}})
	backends := map[string]string{"imap": b.imap.Addr, "pop3": b.pop3.Addr, "smtp": b.smtp.Addr}
	parrots := map[string]string{
		"imap": parrot(t, "* OK parrot ready", func(cmd string) []string {
			tag, _, _ := strings.Cut(cmd, " ")
			return []string{tag + " NO you sent: " + cmd}
		}),
		"pop3": parrot(t, "+OK parrot ready", func(cmd string) []string {
			if strings.HasPrefix(cmd, "USER ") {
				return []string{"+OK"}
			}
			return []string{"-ERR you sent: " + cmd}
		}),
		"smtp": parrot(t, "220 parrot ESMTP", func(cmd string) []string {
			if strings.HasPrefix(cmd, "EHLO ") {
				return []string{"250-parrot", "250 AUTH PLAIN"}
			}
			return []string{"535 5.7.8 you sent: " + cmd}
		}),
	}
	w.service = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.answer(t, rw, r, backends, parrots)
	}))
	t.Cleanup(w.service.Close)
	return w
}

// parrot starts a backend that answers each command by answer.
func parrot(t *testing.T, greeting string, answer func(cmd string) []string) string {
	return testutil.StartFake(t, testutil.Script{Greeting: greeting, Literals: true, Answer: func(c *testutil.FakeConn, cmd string) {
		c.Reply(answer(cmd)...)
	}}).Addr
}

// answer is the auth service: it checks the bearer token and the
// credentials of every method, and answers as the user's outcome says.
func (w *credentialsWorld) answer(t *testing.T, rw http.ResponseWriter, r *http.Request, backends, parrots map[string]string) {
	if got := r.Header.Get("Authorization"); got != "Bearer "+bearerToken {
		t.Errorf("the auth request came with Authorization %q", got)
		rw.WriteHeader(http.StatusForbidden)
		return
	}
	user, _ := url.PathUnescape(r.Header.Get("Auth-User"))
	pass, _ := url.PathUnescape(r.Header.Get("Auth-Pass"))
	salt, _ := url.PathUnescape(r.Header.Get("Auth-Salt"))
	switch user {
	case "broken":
		rw.WriteHeader(http.StatusInternalServerError)
		return
	case "garbled":
		rawReply(rw, "HTTP/1.0 200 OK\r\nAuth-Status OK "+pass+"\r\n\r\n")
		return
	case "echoed":
		request, _ := httputil.DumpRequest(r, false)
		rawReply(rw, string(request))
		return
	}
	if user == "tattler" {
		rw.Header().Set("Auth-Status", "Invalid password "+pass)
		return
	}
	if user == "mallory" || !validCredentials(r.Header.Get("Auth-Method"), pass, salt) {
		rw.Header().Set("Auth-Status", "Invalid login or password")
		return
	}
	backend := backends[r.Header.Get("Auth-Protocol")]
	if user == "parrot" {
		backend = parrots[r.Header.Get("Auth-Protocol")]
	}
	host, port, _ := strings.Cut(backend, ":")
	rw.Header().Set("Auth-Status", "OK")
	rw.Header().Set("Auth-Server", host)
	rw.Header().Set("Auth-Port", port)
	rw.Header().Set("Auth-User", "alice")
	rw.Header().Set("Auth-Pass", backendPassword)
}

// rawReply sends s as the whole response, then closes the connection.
func rawReply(rw http.ResponseWriter, s string) {
	conn, buf, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		return
	}
	buf.WriteString(s)
	buf.Flush()
	conn.Close()
}

// validCredentials checks a login as a service holding the clear-text
// password does, for each method.
func validCredentials(method, pass, salt string) bool {
	switch method {
	case "plain":
		return pass == clientPassword
	case "apop":
		return pass == fmt.Sprintf("%x", md5.Sum([]byte(salt+clientPassword)))
	case "cram-md5":
		return pass == cramDigest(salt)
	case "external":
		return true // the proxy checked the certificate
	}
	return false
}

func cramDigest(challenge string) string {
	mac := hmac.New(md5.New, []byte(clientPassword))
	mac.Write([]byte(challenge))
	return hex.EncodeToString(mac.Sum(nil))
}

func (w *credentialsWorld) write(t *testing.T, name string, b []byte) {
	if err := os.WriteFile(filepath.Join(w.dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (w *credentialsWorld) read(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Join(w.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// addSecrets adds what must never be shown, in clear and in the forms it
// travels in.
func (w *credentialsWorld) addSecrets(secrets ...string) {
	w.secretsMu.Lock()
	defer w.secretsMu.Unlock()
	for _, s := range secrets {
		w.raw = append(w.raw, s)
		w.secrets = append(w.secrets, s, base64.StdEncoding.EncodeToString([]byte(s)), url.QueryEscape(s))
	}
}

// base64Token matches what may be base64, to be decoded and searched.
var base64Token = regexp.MustCompile(`[A-Za-z0-9+/]{12,}={0,2}`)

// refuseSecrets fails the test if text holds a secret, in one of its
// known forms or within anything that decodes as base64.
func (w *credentialsWorld) refuseSecrets(t *testing.T, what, text string) {
	t.Helper()
	w.secretsMu.Lock()
	defer w.secretsMu.Unlock()
	for _, s := range w.secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s holds the secret %q:\n%s", what, s, text)
		}
	}
	for _, token := range base64Token.FindAllString(text, -1) {
		decoded, err := base64.StdEncoding.DecodeString(token)
		if err != nil {
			continue
		}
		for _, s := range w.raw {
			if strings.Contains(string(decoded), s) {
				t.Errorf("%s holds the secret %q in base64, as %q:\n%s", what, s, token, text)
			}
		}
	}
}

// config is the configuration of the matrix, its logs in format.
func (w *credentialsWorld) config(format string) string {
	return fmt.Sprintf(`
error_log %[1]s/error.log debug;
error_log_format %[2]s;
mail {
    auth_http %[3]s/auth;
    auth_http_header Authorization "Bearer %[4]s";
    auth_http_pass_client_cert on;
    proxy_pass_error_message on;
    ssl_certificate %[1]s/server.crt;
    ssl_certificate_key %[1]s/server.key;
    ssl_password_file %[1]s/passwords;
    ssl_client_certificate %[1]s/ca.crt;
    ssl_verify_client optional;
    server { listen 127.0.0.1:0 ssl; protocol imap; imap_auth login plain cram-md5 external; }
    server { listen 127.0.0.1:0 ssl; protocol pop3; pop3_auth plain apop cram-md5 external; }
    server { listen 127.0.0.1:0 ssl; protocol smtp; smtp_auth login plain cram-md5 external; proxy_smtp_auth on; xclient off; }
}
`, w.dir, format, strings.TrimPrefix(w.service.URL, "http://"), bearerToken)
}

// run serves the matrix's configuration with its logs in format, plays
// every method of every protocol for every user, and returns the logs
// and a scrape of the metrics.
func (w *credentialsWorld) run(t *testing.T, format string) (logs, scrape string) {
	os.Remove(filepath.Join(w.dir, "error.log"))
	collector := metrics.New()
	cfg, err := config.LoadBytes("credentials.conf", []byte(w.config(format)), w.dir, config.Options{Metrics: collector})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Proxy.Servers {
		sc := serverSession(s.Server)
		sc.Auth = panicking{sc.Auth}
	}
	p := &mailproxy.Proxy{Config: cfg.Proxy, Logger: cfg.Logger}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	clientTLS := &tls.Config{RootCAs: testutil.Pool(w.ca), ServerName: "127.0.0.1", Certificates: []tls.Certificate{w.client}}
	for _, m := range credentialsMethods {
		for _, u := range credentialsUsers {
			t.Run(m.name+"/"+u.name, func(t *testing.T) {
				c := testutil.DialTLS(t, p.ServerAddrs(m.proto)[0].String(), clientTLS)
				reply := m.login(w, c, u.name)
				if want := u.want[m.proto]; !strings.HasPrefix(reply, want) {
					t.Fatalf("the credentials got %q, want %q", reply, want)
				}
				if u.name == "parrot" && !strings.Contains(reply, auth.Redacted) {
					t.Errorf("the backend's echo %q reached the client unredacted", reply)
				}
				if u.name != "tattler" { // the service chose to quote the client's own password
					w.refuseSecrets(t, "a reply to the client", reply)
				}
				if u.name == "alice" {
					logout(c, m.proto)
				}
			})
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return string(w.read(t, "error.log")), rec.Body.String()
}

// serverSession returns the session settings of a protocol server.
func serverSession(s mailproxy.Server) *session.Config {
	switch s := s.(type) {
	case *imap.Server:
		return &s.Config
	case *pop3.Server:
		return &s.Config
	case *smtp.Server:
		return &s.Config
	}
	panic(fmt.Sprintf("no session settings in %T", s))
}

// panicking is an Authenticator that fails with a runtime error, as a
// bug in a program's callback would, for the user "panic".
type panicking struct{ next auth.Authenticator }

func (p panicking) Authenticate(ctx context.Context, req *auth.Request) (*auth.Result, error) {
	if req.User == "panic" {
		var seen []string
		_ = seen[req.Attempt] // index out of range
	}
	return p.next.Authenticate(ctx, req)
}

// logout ends a logged-in session as its client would.
func logout(c *testutil.Client, proto int) {
	c.Send([]string{"b LOGOUT", "QUIT", "QUIT"}[proto])
	for range 20 {
		if _, ok := readLine(c); !ok {
			return
		}
	}
}

// readLine reads a line of the server's, false at the end of the
// connection.
func readLine(c *testutil.Client) (string, bool) {
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.R.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err == nil
}

// A credentialsMethod logs in with one method of one protocol and returns
// the server's reply to the credentials ("<closed>" when there is none).
type credentialsMethod struct {
	name  string
	proto int // 0 IMAP, 1 POP3, 2 SMTP
	login func(w *credentialsWorld, c *testutil.Client, user string) string
}

var credentialsMethods = []credentialsMethod{
	{"imap/LOGIN", 0, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "* OK", fmt.Sprintf("a LOGIN %s %q", user, clientPassword))
	}},
	{"imap/PLAIN", 0, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "* OK", "a AUTHENTICATE PLAIN", w.payload("\x00"+user+"\x00"+clientPassword))
	}},
	{"imap/LOGIN-SASL", 0, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "* OK", "a AUTHENTICATE LOGIN", testutil.B64(user), w.payload(clientPassword))
	}},
	{"imap/CRAM-MD5", 0, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "* OK", "a AUTHENTICATE CRAM-MD5", cram(user))
	}},
	{"imap/EXTERNAL", 0, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "* OK", "a AUTHENTICATE EXTERNAL", testutil.B64(user))
	}},
	{"pop3/USER", 1, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "+OK", "USER "+user, "PASS "+clientPassword)
	}},
	{"pop3/APOP", 1, func(w *credentialsWorld, c *testutil.Client, user string) string {
		greeting, _ := readLine(c)
		stamp := greeting[strings.Index(greeting, "<"):]
		digest := fmt.Sprintf("%x", md5.Sum([]byte(stamp+clientPassword)))
		w.addSecrets(digest)
		return w.dialogue(c, "", "APOP "+user+" "+digest)
	}},
	{"pop3/PLAIN", 1, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "+OK", "AUTH PLAIN", w.payload("\x00"+user+"\x00"+clientPassword))
	}},
	{"pop3/CRAM-MD5", 1, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "+OK", "AUTH CRAM-MD5", cram(user))
	}},
	{"pop3/EXTERNAL", 1, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "+OK", "AUTH EXTERNAL", testutil.B64(user))
	}},
	{"smtp/PLAIN", 2, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "220", "EHLO c.test", "AUTH PLAIN "+w.payload("\x00"+user+"\x00"+clientPassword))
	}},
	{"smtp/LOGIN", 2, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "220", "EHLO c.test", "AUTH LOGIN", testutil.B64(user), w.payload(clientPassword))
	}},
	{"smtp/CRAM-MD5", 2, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "220", "EHLO c.test", "AUTH CRAM-MD5", cram(user))
	}},
	{"smtp/EXTERNAL", 2, func(w *credentialsWorld, c *testutil.Client, user string) string {
		return w.dialogue(c, "220", "EHLO c.test", "AUTH EXTERNAL", testutil.B64(user))
	}},
}

// cram marks a line as the answer to the CRAM-MD5 challenge of the reply
// before it, for dialogue.
func cram(user string) string { return "\x00cram " + user }

// payload returns a SASL response, keeping it as a secret.
func (w *credentialsWorld) payload(s string) string {
	b64 := testutil.B64(s)
	w.addSecrets(b64)
	return b64
}

// dialogue reads the greeting (when greeting is not empty, it must start
// so), then sends each line in turn, reading the reply to each (the last
// line of a multi-line one); it returns the last reply, or "<closed>".
// A cram line answers the challenge of the reply before it.
func (w *credentialsWorld) dialogue(c *testutil.Client, greeting string, lines ...string) string {
	if greeting != "" {
		if got, _ := readLine(c); !strings.HasPrefix(got, greeting) {
			return "greeting " + got
		}
	}
	reply := ""
	for _, line := range lines {
		if user, ok := strings.CutPrefix(line, "\x00cram "); ok {
			challenge, _ := base64.StdEncoding.DecodeString(reply[strings.LastIndex(reply, " ")+1:])
			digest := cramDigest(string(challenge))
			w.addSecrets(digest)
			line = w.payload(user + " " + digest)
		}
		c.Send("%s", line)
		var ok bool
		for {
			if reply, ok = readLine(c); !ok {
				return "<closed>"
			}
			if !isContinued(reply) {
				break
			}
		}
	}
	return reply
}

// isContinued reports a line that more lines of the same reply follow:
// IMAP's untagged ones, SMTP's "250-".
func isContinued(line string) bool {
	return strings.HasPrefix(line, "* ") || len(line) > 3 && line[3] == '-'
}

// errorStrings gathers the errors that carry what a service or a
// configuration said: auth_http's for each failing service, and the
// configuration's for a key no password decrypts, a key that is not PEM,
// a key of another certificate, and auth_http URLs and headers that
// cannot be used.
func (w *credentialsWorld) errorStrings(t *testing.T) map[string]string {
	errs := map[string]string{}
	client := &auth.HTTP{URL: w.service.URL + "/auth", Header: [][2]string{{"Authorization", "Bearer " + bearerToken}}, Logger: testutil.Discard}
	for _, user := range []string{"broken", "garbled", "echoed"} {
		_, err := client.Authenticate(context.Background(), &auth.Request{Protocol: "imap", Method: auth.MethodPlain, User: user, Password: clientPassword})
		if err == nil {
			t.Fatalf("the service for %s did not fail", user)
		}
		errs["auth_http's error for "+user] = err.Error()
	}
	other := testutil.NewCA(t, "other").Issue(t, testutil.CertOptions{})
	w.write(t, "other.key", other.KeyPEM())
	w.write(t, "wrong-passwords", []byte("wrong-"+keyPassphrase+"\n"))
	broken := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: append([]byte{0x30, 0x82}, w.keyPEM[40:200]...)})
	w.addSecrets(strings.Split(string(broken), "\n")[1])
	base := "mail {\n auth_http 127.0.0.1:9/auth;\n server { listen 127.0.0.1:0 ssl; protocol imap;\n %s\n }\n}\n"
	for name, body := range map[string]string{
		"no password decrypts the key": "ssl_certificate server.crt; ssl_certificate_key server.key; ssl_password_file wrong-passwords;",
		"an encrypted key, no file":    "ssl_certificate server.crt; ssl_certificate_key server.key;",
		"a data: key that is broken":   fmt.Sprintf("ssl_certificate server.crt; ssl_certificate_key %q;", "data:"+string(broken)),
		"a data: key of another":       fmt.Sprintf("ssl_certificate server.crt; ssl_certificate_key %q;", "data:"+string(other.KeyPEM())),
		"the key of another":           "ssl_certificate server.crt; ssl_certificate_key other.key;",
		"auth_http with a password":    "auth_http http://alice:" + bearerToken + "@127.0.0.1:9/auth;",
		"a control byte in the token":  "auth_http_header Authorization \"Bearer " + bearerToken + "\x01\";",
	} {
		_, err := config.LoadBytes("broken.conf", fmt.Appendf(nil, base, body), w.dir, config.Options{Logger: testutil.Discard})
		if err == nil {
			t.Fatalf("%s: the configuration loaded", name)
		}
		errs["the configuration's error for "+name] = err.Error()
	}
	w.addSecrets(strings.Split(string(other.KeyPEM()), "\n")[1])
	return errs
}
