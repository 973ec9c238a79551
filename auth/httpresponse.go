package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The response headers the decision is read from.
const (
	hStatus = iota
	hServer
	hPort
	hUser
	hPass
	hWait
	hErrorCode
	numAuthHeaders
)

var authHeaderNames = [numAuthHeaders]string{
	hStatus: "Auth-Status", hServer: "Auth-Server", hPort: "Auth-Port", hUser: "Auth-User",
	hPass: "Auth-Pass", hWait: "Auth-Wait", hErrorCode: "Auth-Error-Code",
}

// response is what is kept of an auth_http response head: its status,
// the first value of each Auth header (as http.Header.Get reads it), and
// how its body is framed. Nothing else is stored, so a service sending
// many or large other headers costs no memory.
type response struct {
	code         int
	major, minor int // HTTP version
	value        [numAuthHeaders]string
	has          [numAuthHeaders]bool

	clCount    int      // Content-Length headers
	cl         [20]byte // the first one's value, trimmed
	clLen      int      // its length; longer than cl: invalid
	clMismatch bool     // another one differs
	teCount    int      // Transfer-Encoding headers
	teChunked  bool     // the first one says chunked
	connClose  bool     // Connection: close
	connKeep   bool     // Connection: keep-alive
	badTrailer bool     // Trailer names a framing header
}

// get returns the first value of an Auth header, "" when absent.
func (r *response) get(h int) string { return r.value[h] }

// Framing of a response body.
const (
	bodyNone    = 0
	bodyChunked = -1
	bodyToEOF   = -2
)

// errHeaderTooLong ends a response whose heads exceed maxResponseHeader.
var errHeaderTooLong = fmt.Errorf("auth http server sent more than %d bytes of response headers", maxResponseHeader)

// reader reads auth_http responses. It accepts what net/http's client
// accepts, and refuses what it refuses, so that a service behaves as it
// did with it; the body is skipped, not kept.
type reader struct {
	br   *bufio.Reader // at least maxResponseHeader bytes of buffer
	fold []byte        // a header line joined with its continuation lines
	n    int           // bytes of response heads read
	resp response
}

// line reads a line without its end (LF or CRLF), counting it against
// maxResponseHeader.
func (rd *reader) line() ([]byte, error) {
	l, err := rd.br.ReadSlice('\n')
	rd.n += len(l)
	switch {
	case rd.n > maxResponseHeader, err == bufio.ErrBufferFull:
		return nil, errHeaderTooLong
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil
}

// readResponse reads the head of the final response, after any 1xx
// informational ones, into rd.resp, and returns how its body is framed:
// a length, bodyNone, bodyChunked or bodyToEOF.
func (rd *reader) readResponse() (body int64, err error) {
	rd.n = 0
	for {
		rd.resp = response{}
		if body, err = rd.readHead(); err != nil {
			return 0, err
		}
		if c := rd.resp.code; c < 100 || c > 199 || c == 101 {
			return body, nil
		}
	}
}

// began reports whether any byte of a response arrived.
func (rd *reader) began() bool { return rd.n > 0 || rd.br.Buffered() > 0 }

func (rd *reader) readHead() (int64, error) {
	r := &rd.resp
	line, err := rd.line()
	if err != nil {
		return 0, err
	}
	if err := r.parseStatus(line); err != nil {
		return 0, err
	}
	for first := true; ; first = false {
		line, err := rd.line()
		if err != nil {
			return 0, err
		}
		if len(line) == 0 {
			break
		}
		if first && (line[0] == ' ' || line[0] == '\t') || bytes.IndexByte(line, ':') < 0 {
			return 0, errMalformedHeader
		}
		if line, err = rd.unfold(trimSpaceTab(line)); err != nil {
			return 0, err
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		if !validHeaderName(k) {
			return 0, errMalformedHeader
		}
		for _, c := range v {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, errMalformedHeader
			}
		}
		r.header(k, bytes.TrimLeft(v, " \t"))
	}
	return r.framing()
}

// unfold joins line with the continuation lines (obsolete line folding)
// that follow it, each trimmed and after a space, as net/textproto does.
// line stays valid: it is copied before the reader moves.
func (rd *reader) unfold(line []byte) ([]byte, error) {
	if rd.br.Buffered() > 0 {
		if next, _ := rd.br.Peek(1); next[0] != ' ' && next[0] != '\t' {
			return line, nil
		}
	}
	rd.fold = append(rd.fold[:0], line...)
	for {
		next, err := rd.br.Peek(1)
		if err != nil || next[0] != ' ' && next[0] != '\t' {
			return rd.fold, nil // an error shows at the next line
		}
		l, err := rd.line()
		if err != nil {
			return nil, err
		}
		rd.fold = append(append(rd.fold, ' '), trimSpaceTab(l)...)
	}
}

// parseStatus reads a status line as http.ReadResponse does.
func (r *response) parseStatus(line []byte) error {
	proto, status, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return malformed("response", line)
	}
	code, _, _ := bytes.Cut(bytes.TrimLeft(status, " "), []byte(" "))
	if len(code) != 3 {
		return malformed("status code", code)
	}
	n, err := strconv.Atoi(string(code)) // as net/http: "+12" is 12
	if err != nil || n < 0 {
		return malformed("status code", code)
	}
	r.code = n
	if r.major, r.minor, ok = parseVersion(proto); !ok {
		return malformed("version", proto)
	}
	return nil
}

// parseVersion reads "HTTP/x.y" with one digit each, as
// http.ParseHTTPVersion does.
func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != len("HTTP/1.1") || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// header notes one header line.
func (r *response) header(name, v []byte) {
	for i, n := range authHeaderNames {
		if !r.has[i] && equalFold(name, n) {
			r.has[i], r.value[i] = true, string(v)
			return
		}
	}
	switch {
	case equalFold(name, "Content-Length"):
		v = trimSpaceTab(v)
		if r.clCount++; r.clCount == 1 {
			r.clLen = len(v)
			copy(r.cl[:], v)
		} else if r.clLen > len(r.cl) || string(v) != string(r.cl[:r.clLen]) {
			r.clMismatch = true
		}
	case equalFold(name, "Transfer-Encoding"):
		if r.teCount++; r.teCount == 1 {
			r.teChunked = equalFold(v, "chunked")
		}
	case equalFold(name, "Connection"):
		for tok := range bytes.SplitSeq(v, []byte(",")) {
			tok = trimSpaceTab(tok)
			r.connClose = r.connClose || equalFold(tok, "close")
			r.connKeep = r.connKeep || equalFold(tok, "keep-alive")
		}
	case equalFold(name, "Trailer"):
		for tok := range bytes.SplitSeq(v, []byte(",")) {
			tok = trimSpaceTab(tok)
			r.badTrailer = r.badTrailer || equalFold(tok, "Transfer-Encoding") || equalFold(tok, "Trailer") || equalFold(tok, "Content-Length")
		}
	}
}

// framing checks the framing headers as net/http's readTransfer does and
// returns how the body is framed.
func (r *response) framing() (int64, error) {
	chunked := false
	// Transfer-Encoding counts from HTTP/1.1 on; net/http takes 0.0 for 1.1.
	if r.teCount > 0 && (r.major > 1 || r.major == 1 && r.minor >= 1 || r.major == 0 && r.minor == 0) {
		if r.teCount > 1 || !r.teChunked {
			return 0, errors.New("auth http server sent an unsupported transfer encoding")
		}
		chunked = true
	}
	length := int64(-1)
	if r.clCount > 0 {
		if r.clMismatch {
			return 0, errors.New("auth http server sent differing Content-Length headers")
		}
		n, err := strconv.ParseUint(string(r.cl[:min(r.clLen, len(r.cl))]), 10, 63)
		if err != nil || r.clLen > len(r.cl) {
			return 0, errors.New("auth http server sent an invalid Content-Length")
		}
		length = int64(n)
	}
	if chunked && r.badTrailer {
		return 0, errors.New("auth http server sent an invalid Trailer")
	}
	switch {
	case r.code >= 100 && r.code <= 199 || r.code == 204 || r.code == 304:
		return bodyNone, nil
	case chunked:
		return bodyChunked, nil
	case length >= 0:
		return length, nil
	}
	return bodyToEOF, nil
}

// keepAlive reports whether the response lets the connection serve
// another request, as net/http's shouldClose decides.
func (r *response) keepAlive() bool {
	switch {
	case r.major < 1:
		return false
	case r.major == 1 && r.minor == 0:
		return !r.connClose && r.connKeep
	}
	return !r.connClose
}

// skipBody reads the body of the response whose head was just read,
// framed as body says, and reports whether the connection can carry
// another request. Bodies are ignored: one that is too long, unframed or
// broken just costs the connection.
func (rd *reader) skipBody(body int64) bool {
	if !rd.resp.keepAlive() || rd.resp.code == 101 {
		return false
	}
	switch {
	case body == bodyChunked:
		if !rd.skipChunked() {
			return false
		}
	case body < 0 || body > maxResponseBody:
		return false
	default:
		if _, err := rd.br.Discard(int(body)); err != nil {
			return false
		}
	}
	return rd.br.Buffered() == 0 // anything more is not an answer to us
}

// skipChunked reads a chunked body and its trailer, maxResponseBody bytes
// at most, and reports whether it ended well.
func (rd *reader) skipChunked() bool {
	budget := maxResponseBody
	for {
		l, err := rd.br.ReadSlice('\n')
		if budget -= len(l); err != nil || budget < 0 {
			return false
		}
		size, _, _ := bytes.Cut(trimSpaceTab(bytes.TrimRight(l, "\r\n")), []byte(";"))
		n, err := strconv.ParseUint(string(trimSpaceTab(size)), 16, 32)
		if err != nil {
			return false
		}
		if budget -= int(n) + 2; budget < 0 {
			return false
		}
		if n == 0 {
			break
		}
		if _, err := rd.br.Discard(int(n)); err != nil {
			return false
		}
		if l, err := rd.br.ReadSlice('\n'); err != nil || len(bytes.TrimRight(l, "\r\n")) != 0 {
			return false
		}
	}
	for { // the trailer, up to an empty line
		l, err := rd.br.ReadSlice('\n')
		if budget -= len(l); err != nil || budget < 0 {
			return false
		}
		if len(bytes.TrimRight(l, "\r\n")) == 0 {
			return true
		}
	}
}

// errMalformedHeader ends a response with a header line that cannot be
// read. The line is not quoted: it may hold a password.
var errMalformedHeader = errors.New("auth http server sent a malformed header line")

// malformed reports a status line that cannot be read, quoting its start.
func malformed(what string, line []byte) error {
	const quote = 80
	return fmt.Errorf("auth http server sent a malformed %s: %q", what, line[:min(len(line), quote)])
}

// validHeaderName reports whether a header name is a token, allowing the
// spaces net/http lets through (such a name matches nothing).
func validHeaderName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !isTokenByte(c) && c != ' ' {
			return false
		}
	}
	return true
}

// isTokenByte reports whether c may appear in an HTTP token (RFC 9110).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// equalFold reports whether b and s are equal in ASCII, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func trimSpaceTab(b []byte) []byte { return bytes.Trim(b, " \t") }
