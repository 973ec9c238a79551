package auth

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

// FuzzParseResponse feeds raw auth_http responses to the response reader
// and parseResponse, and the same bytes to net/http's ReadResponse, the
// client the reader replaced: both must decide alike. An accepted login
// must name a backend that dials.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-User: bob\r\nAuth-Pass: pw\r\nAuth-Port: 143\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 70000\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: +1\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 1e3\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 2001:db8::7\r\nAuth-Port: 993\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: [2001:db8::7]\r\nAuth-Port: 993\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: imap-1.example.org.\r\nAuth-Port: 143\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: WAIT\r\nAuth-Wait: 3\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: Invalid login or password\r\nAuth-Wait: 3\r\nAuth-Error-Code: 535 5.7.8\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"garbage\x00\xff\r\n\r\n",
		"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Status: Nope\r\nAuth-Server: 10.0.0.7\r\nAuth-Server: 10.0.0.8\r\nAuth-Port: 143\r\nAuth-Port: 0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nauth-status: OK\r\nauth-server: 10.0.0.7\r\nauth-port: 143\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.7\r\nAuth-Port: 143\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\nAuth-Status: OK\nAuth-Server: 10.0.0.7\nAuth-Port:\n 143\nAuth-User: a\n\t b \n\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X, Content-Length\r\nAuth-Status: OK\r\n\r\n5;x\r\nhello\r\n0\r\nX: y\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 1\r\nContent-Length: 01\r\nAuth-Status: x\r\n\r\n",
		"HTTP/1.1 500 Oops\r\nAuth-Status: OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nAuth-Status : OK\r\nConnection: keep-alive, close\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &Request{Protocol: "imap", Method: MethodPlain, User: "u", Password: "p"}
		res, wait, err := decide(data, req)
		if len(data) <= 4<<10 { // far from the limit on header bytes, which net/http counts differently
			stdRes, stdWait, stdErr := decideStd(data, req)
			if (err == nil) != (stdErr == nil) || err == nil && (wait != stdWait || *res != *stdRes) {
				t.Fatalf("decision %+v %v %v, net/http's %+v %v %v", res, wait, err, stdRes, stdWait, stdErr)
			}
		}
		if err != nil {
			return
		}
		if res == nil {
			t.Fatal("nil Result without an error")
		}
		if wait || !res.OK() {
			return
		}
		_, port, err := net.SplitHostPort(res.Backend)
		if err != nil {
			t.Fatalf("accepted login with backend %q: %v (result %+v)", res.Backend, err, *res)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("accepted login with backend %q: bad port", res.Backend)
		}
	})
}

// decide reads data as a response to req, body included, as HTTP does.
func decide(data []byte, req *Request) (*Result, bool, error) {
	rd := reader{br: bufio.NewReaderSize(bytes.NewReader(data), maxResponseHeader)}
	body, err := rd.readResponse()
	if err != nil {
		return nil, false, err
	}
	rd.skipBody(body)
	if rd.resp.code < 200 || rd.resp.code > 299 {
		return nil, false, fmt.Errorf("status %d", rd.resp.code)
	}
	return parseResponse(&rd.resp, req)
}

// decideStd reads data as HTTP did with net/http's client.
func decideStd(data []byte, req *Request) (*Result, bool, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, false, err
		}
		if c := resp.StatusCode; c >= 100 && c <= 199 && c != 101 {
			continue
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil, false, fmt.Errorf("status %d", resp.StatusCode)
		}
		var h response
		for i, name := range authHeaderNames {
			if v := resp.Header[name]; len(v) > 0 {
				h.has[i], h.value[i] = true, v[0]
			}
		}
		return parseResponse(&h, req)
	}
}

// FuzzSASL runs SASL exchanges: mech picks the mechanism, data holds the
// client's decoded responses one a line, the first sent as the initial
// response when initial is set.
func FuzzSASL(f *testing.F) {
	mechs := []string{SASLPlain, SASLLogin, SASLCRAMMD5, SASLExternal}
	f.Add(byte(0), []byte("\x00alice\x00secret"), true)
	f.Add(byte(0), []byte("\x00alice\x00secret"), false)
	f.Add(byte(0), []byte("bob\x00alice\x00secret"), true)
	f.Add(byte(1), []byte("alice\nsecret"), false)
	f.Add(byte(1), []byte("alice\nsecret"), true)
	f.Add(byte(1), []byte("\nsecret"), false)
	f.Add(byte(1), []byte("alice\nsecret\nmore"), false)
	f.Add(byte(2), []byte("alice 0123456789abcdef0123456789abcdef"), false)
	f.Add(byte(2), []byte("john smith 0123456789ABCDEF0123456789ABCDEF"), false)
	f.Add(byte(2), []byte("alice 0123456789abcdef0123456789abcdef"), true)
	f.Add(byte(3), []byte("alice"), true)
	f.Add(byte(3), []byte(""), true)
	f.Add(byte(3), []byte("a\x00b"), false)
	f.Fuzz(func(t *testing.T, mech byte, data []byte, initial bool) {
		m := mechs[int(mech)%len(mechs)]
		req := &Request{Protocol: "imap"}
		s, err := NewSASL(m, req, testServerName)
		if err != nil {
			t.Fatal(err)
		}
		responses := bytes.Split(data, []byte("\n"))
		var resp []byte // nil: no initial response
		if initial {
			resp, responses = responses[0], responses[1:]
		}
		for range 5 {
			_, done, err := s.Next(resp)
			if err != nil {
				return
			}
			if done {
				if len(req.User) > maxCredentialLen {
					t.Fatalf("%s: user of %d bytes accepted", m, len(req.User))
				}
				if m == SASLCRAMMD5 && !isHexDigest([]byte(req.Password)) {
					t.Fatalf("%s: password %q is not a digest", m, req.Password)
				}
				if m != SASLExternal && req.User == "" {
					t.Fatalf("%s: empty user accepted", m)
				}
				return
			}
			if len(responses) == 0 {
				return
			}
			resp, responses = responses[0], responses[1:]
			if resp == nil {
				resp = []byte{} // a response line is never nil
			}
		}
	})
}

// FuzzEscape checks that Escape is undone by URL unescaping and leaves no
// control character in a header.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "alice", "john smith", "100%", "%41", "a\r\nb", "\x00\x1f\x7f", "пароль", "\xff\xfe", "p+w/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := escape(s)
		got, err := url.PathUnescape(e)
		if err != nil || got != s {
			t.Fatalf("PathUnescape(escape(%q) = %q) = %q, %v", s, e, got, err)
		}
		for i := 0; i < len(e); i++ {
			if c := e[i]; c < 0x20 || c == 0x7f || c == ' ' {
				t.Fatalf("escape(%q) = %q has byte %#x", s, e, c)
			}
		}
	})
}
