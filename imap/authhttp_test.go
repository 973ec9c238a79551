package imap_test

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
)

// A full run through an nginx-style auth_http service: logins by every
// method succeed and fail as the service says, and no password, SASL
// response or Auth-Pass value reaches the logs, even at debug level.
func TestAuthHTTPFullRunLogsNoSecrets(t *testing.T) {
	const backendPass = "Auth-Pass-value-7"
	s := start(t, &imap.Server{})
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.Header.Get("Auth-Method") {
		case "plain":
			if r.Header.Get("Auth-Pass") != password {
				h.Set("Auth-Status", "Invalid login or password")
				h.Set("Auth-Wait", "0")
				return
			}
		case "cram-md5":
			mac := hmac.New(md5.New, []byte(password))
			mac.Write([]byte(r.Header.Get("Auth-Salt")))
			if r.Header.Get("Auth-Pass") != hex.EncodeToString(mac.Sum(nil)) {
				h.Set("Auth-Status", "Invalid login or password")
				return
			}
			h.Set("Auth-Pass", password)
		}
		host, port, _ := strings.Cut(s.backend.Addr, ":")
		h.Set("Auth-Status", "OK")
		h.Set("Auth-Server", host)
		h.Set("Auth-Port", port)
	}))
	defer service.Close()

	logs := &testutil.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := &imap.Server{
		AuthMethods: []string{"plain", "login", "cram-md5"},
		Config:      session.Config{Logger: log, Auth: &auth.HTTP{URL: service.URL + "/auth", Logger: log}},
	}
	addr := serve(t, srv)

	var clients []*testutil.Client
	dial := func() *testutil.Client {
		c := greet(t, addr)
		clients = append(clients, c)
		return c
	}
	plainIR := testutil.B64("\x00" + user + "\x00" + password)
	dial().Exchange("a LOGIN alice secret\r\n", "a OK ")
	dial().Exchange("a AUTHENTICATE PLAIN "+plainIR+"\r\n", "a OK ")
	dial().Play([]testutil.Step{
		{"a AUTHENTICATE LOGIN\r\n", "+ "},
		{testutil.B64(user) + "\r\n", "+ "},
		{testutil.B64(password) + "\r\n", "a OK "},
	})
	c := dial()
	c.Send("a AUTHENTICATE CRAM-MD5")
	challenge, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(c.Line(), "+ "))
	mac := hmac.New(md5.New, []byte(password))
	mac.Write(challenge)
	digest := hex.EncodeToString(mac.Sum(nil))
	cramResp := testutil.B64(user + " " + digest)
	c.Exchange(cramResp+"\r\n", "a OK ")
	dial().Exchange("a LOGIN alice wrong-"+backendPass+"\r\n", "a NO [AUTHENTICATIONFAILED] Invalid login or password")

	// The clients leave; the relays log the ends of their sessions.
	for _, c := range clients {
		c.Conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("sessions did not end after their clients left: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "client logged in") || !strings.Contains(out, "client login failed") {
		t.Fatalf("the run did not log its logins:\n%s", out)
	}
	for _, secret := range []string{password, plainIR, testutil.B64(password), cramResp, digest, backendPass} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q is in the logs:\n%s", secret, out)
		}
	}
}
