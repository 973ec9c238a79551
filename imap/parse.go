package imap

import (
	"bytes"
	"errors"
	"strconv"
)

// tokenKind says what a token of a command's arguments is.
type tokenKind int

const (
	atomToken   tokenKind = iota // an atom, NIL included
	stringToken                  // a quoted string or a literal
	openToken                    // "("
	closeToken                   // ")"
)

type token struct {
	kind  tokenKind
	value string
}

// literal is the announcement "{n}" or "{n+}" that ends a line.
type literal struct {
	size int
	sync bool // "{n}": the client waits for a continuation request
}

var errSyntax = errors.New("imap: syntax error")

// tokenize splits the arguments on one line into tokens. A line that ends
// with a literal announcement returns it; the literal's bytes and the rest
// of the command follow on the connection.
func tokenize(line []byte) ([]token, *literal, error) {
	var toks []token
	for len(line) > 0 {
		switch c := line[0]; {
		case c == ' ':
			line = line[1:]
		case c == '(':
			toks, line = append(toks, token{kind: openToken}), line[1:]
		case c == ')':
			toks, line = append(toks, token{kind: closeToken}), line[1:]
		case c == '"':
			s, rest, err := quoted(line)
			if err != nil {
				return nil, nil, err
			}
			toks = append(toks, token{kind: stringToken, value: s})
			line = rest
		case c == '{':
			lit, err := parseLiteral(line)
			return toks, lit, err
		default:
			n := atomLen(line)
			if n == 0 {
				return nil, nil, errSyntax
			}
			toks = append(toks, token{kind: atomToken, value: string(line[:n])})
			line = line[n:]
		}
	}
	return toks, nil, nil
}

// quoted reads a quoted string at the start of line: backslash escapes
// only '"' and '\' (RFC 9051 quoted-specials).
func quoted(line []byte) (s string, rest []byte, err error) {
	var b bytes.Buffer
	for i := 1; i < len(line); i++ {
		switch c := line[i]; c {
		case '"':
			return b.String(), line[i+1:], nil
		case '\\':
			i++
			if i == len(line) || line[i] != '"' && line[i] != '\\' {
				return "", nil, errSyntax
			}
			b.WriteByte(line[i])
		case 0:
			return "", nil, errSyntax
		default:
			b.WriteByte(c)
		}
	}
	return "", nil, errSyntax
}

// parseLiteral reads "{n}" or "{n+}", which must end the line.
func parseLiteral(line []byte) (*literal, error) {
	end := len(line) - 1
	if end < 2 || line[end] != '}' {
		return nil, errSyntax
	}
	digits := line[1:end]
	lit := &literal{sync: true}
	if d, ok := bytes.CutSuffix(digits, []byte{'+'}); ok {
		digits, lit.sync = d, false
	}
	if len(digits) == 0 || len(digits) > 10 || !allDigits(digits) {
		return nil, errSyntax
	}
	n, err := strconv.ParseUint(string(digits), 10, 32)
	if err != nil {
		return nil, errSyntax
	}
	lit.size = int(n)
	return lit, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// atomLen returns the length of the atom at the start of line: ASTRING-CHARs
// (RFC 9051), which exclude space, parentheses, "{", "%", "*", '"', "\" and
// controls.
func atomLen(line []byte) int {
	for i, c := range line {
		if !atomChar(c) {
			return i
		}
	}
	return len(line)
}

func atomChar(c byte) bool {
	return c > ' ' && c < 0x7f && bytes.IndexByte([]byte(`(){%*"\`), c) < 0
}

// astrings reads toks as exactly n astrings (atoms or strings).
func astrings(toks []token, n int) ([]string, bool) {
	if len(toks) != n {
		return nil, false
	}
	out := make([]string, n)
	for i, t := range toks {
		if t.kind != atomToken && t.kind != stringToken {
			return nil, false
		}
		out[i] = t.value
	}
	return out, true
}
