package auth

import (
	"encoding/base64"
	"strings"
)

// Redacted is what [Redact] puts in place of a credential.
const Redacted = "***"

// Redact returns s with password replaced by [Redacted] in each form a
// login carries it on the wire: a SASL PLAIN response with user, a CRAM-MD5
// response (password being the digest), the password alone in base64
// (SASL LOGIN), quoted as IMAP quotes it, and as it is.
//
// A peer may echo what it was sent: a backend quoting the command it
// refuses, an auth service its request. What such a peer said goes
// through Redact before it reaches a log or an error.
func Redact(s, user, password string) string {
	if password == "" || s == "" {
		return s
	}
	b64 := base64.StdEncoding.EncodeToString
	forms := [...]string{
		b64([]byte("\x00" + user + "\x00" + password)),
		b64([]byte(user + "\x00" + user + "\x00" + password)),
		b64([]byte(user + " " + password)),
		b64([]byte(password)),
		imapQuoted.Replace(password),
		password,
	}
	for _, form := range forms {
		s = strings.ReplaceAll(s, form, Redacted)
	}
	return s
}

// imapQuoted escapes a string as IMAP's quoted strings hold it.
var imapQuoted = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
