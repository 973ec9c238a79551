package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
)

// authService is an auth_http service answering from a table: a known
// user with the right password gets Auth-Status OK and the address of a
// backend of the protocol asked for, the protocol's ports taken in turn.
// It speaks the little HTTP that nginx (HTTP/1.0, a connection per
// request) and our proxy (HTTP/1.1, kept alive) send, and nothing more.
type authService struct {
	server
	users    map[string]string // user -> password
	backends map[string][]string
	next     atomic.Uint64
}

// benchUsers is the size of the table: user0 … user99, password "secret".
const benchUsers = 100

func benchUser(i int) string { return fmt.Sprintf("user%d", i%benchUsers) }

const benchPassword = "secret"

func startAuth(backends map[string][]string) (*authService, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &authService{users: map[string]string{}, backends: backends}
	for i := range benchUsers {
		a.users[benchUser(i)] = benchPassword
	}
	a.serve(ln, a.handle)
	return a, nil
}

func (a *authService) addr() string { return a.addrs()[0] }

// handle answers the requests of one connection: one for HTTP/1.0 or
// "Connection: close", as many as come otherwise.
func (a *authService) handle(c net.Conn) {
	r := bufio.NewReaderSize(c, 4<<10)
	w := bufio.NewWriterSize(c, 1<<10)
	for {
		req, err := readAuthRequest(r)
		if err != nil {
			return
		}
		a.answer(w, req)
		if w.Flush() != nil || !req.keepAlive {
			return
		}
	}
}

type authRequest struct {
	proto, user, pass, version string
	keepAlive                  bool
}

// maxAuthHeaders bounds a request's header lines.
const maxAuthHeaders = 64

func readAuthRequest(r *bufio.Reader) (*authRequest, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	req := &authRequest{version: "HTTP/1.0"}
	if strings.HasSuffix(strings.TrimRight(string(line), "\r\n"), "HTTP/1.1") {
		req.version, req.keepAlive = "HTTP/1.1", true
	}
	for range maxAuthHeaders {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		name, value, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "":
			return req, nil
		case "auth-user":
			req.user = value
		case "auth-pass":
			req.pass = value
		case "auth-protocol":
			req.proto = value
		case "connection":
			req.keepAlive = req.keepAlive && !strings.EqualFold(value, "close")
		}
	}
	return nil, fmt.Errorf("auth request: too many headers")
}

func (a *authService) answer(w *bufio.Writer, req *authRequest) {
	fmt.Fprintf(w, "%s 200 OK\r\nContent-Length: 0\r\n", req.version)
	ports := a.backends[req.proto]
	if pass, ok := a.users[req.user]; !ok || pass != req.pass || len(ports) == 0 {
		w.WriteString("Auth-Status: Invalid login or password\r\nAuth-Wait: 1\r\n\r\n")
		return
	}
	host, port, _ := net.SplitHostPort(ports[a.next.Add(1)%uint64(len(ports))])
	fmt.Fprintf(w, "Auth-Status: OK\r\nAuth-Server: %s\r\nAuth-Port: %s\r\n\r\n", host, port)
}
