package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/engine"
)

var errBackendRefused = errors.New("pop3: backend refused the login")

// proxy logs in to the backend with USER and PASS and hands the session to
// the relay. After a failed backend login the client may try again.
func (cl *client) proxy(login *engine.Login) bool {
	reply, err := cl.c.ProxyVia(cl.ctx, login.Backend, func(conn net.Conn, r *bufio.Reader) ([]string, error) {
		reply, err := backendLogin(conn, r, login)
		return []string{reply}, err
	})
	if err != nil {
		return cl.backendFailed(reply, login, err)
	}
	return false
}

// backendFailed answers a failed backend login: with
// proxy_pass_error_message the backend's own words, the password hidden
// should it echo it: it may be the auth service's, not the client's.
func (cl *client) backendFailed(reply string, login *engine.Login, err error) bool {
	cl.c.BackendFailed("backend login failed", login, err)
	switch {
	case errors.Is(err, errBackendRefused) && cl.st.PassErrorMessage:
		return cl.c.Fail(auth.Redact(reply, login.User, login.Password))
	case errors.Is(err, errBackendRefused):
		return cl.c.Fail("-ERR Authentication failed")
	}
	return cl.c.Fail("-ERR [SYS/TEMP] Backend unavailable")
}

// backendLogin reads the greeting and logs in. It returns the backend's
// reply to PASS ("+OK …", or "-ERR …" with errBackendRefused).
func backendLogin(conn net.Conn, r *bufio.Reader, login *engine.Login) (string, error) {
	if strings.ContainsAny(login.User+login.Password, "\r\n\x00") {
		return "", errors.New("credentials cannot be sent in POP3")
	}
	if _, err := expectOK(r); err != nil {
		return "", fmt.Errorf("greeting: %v", err) // a refused greeting is an unavailable backend
	}
	if _, err := fmt.Fprintf(conn, "USER %s\r\n", login.User); err != nil {
		return "", err
	}
	if reply, err := expectOK(r); err != nil {
		return reply, err
	}
	if _, err := fmt.Fprintf(conn, "PASS %s\r\n", login.Password); err != nil {
		return "", err
	}
	return expectOK(r)
}

// expectOK reads a reply line: "+OK …" is success, "-ERR …" a refusal.
func expectOK(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return "", fmt.Errorf("backend: %w", err)
	}
	reply := strings.TrimRight(string(line), "\r\n")
	switch {
	case strings.HasPrefix(reply, "+OK"):
		return reply, nil
	case strings.HasPrefix(reply, "-ERR"):
		return reply, errBackendRefused
	}
	return "", fmt.Errorf("backend answered %q", reply)
}
