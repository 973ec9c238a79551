package auth_test

import (
	"testing"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
)

// What backends and services echo, in the forms a password travels in:
// every form is gone, and what is not a credential stays.
func TestRedact(t *testing.T) {
	const user, pw = "alice", `p"w\1`
	tests := []struct{ name, in, want string }{
		{"clear, POP3 PASS", "-ERR unknown command: PASS " + pw, "-ERR unknown command: PASS ***"},
		{"IMAP quoted", `a BAD no such command: a LOGIN "alice" "p\"w\\1"`, `a BAD no such command: a LOGIN "alice" "***"`},
		{"SASL PLAIN", "535 5.7.8 bad AUTH PLAIN " + testutil.B64("\x00"+user+"\x00"+pw), "535 5.7.8 bad AUTH PLAIN ***"},
		{"SASL PLAIN with authzid", "NO " + testutil.B64(user+"\x00"+user+"\x00"+pw), "NO ***"},
		{"SASL LOGIN", "NO " + testutil.B64(pw), "NO ***"},
		{"CRAM-MD5 response", "NO " + testutil.B64(user+" "+pw), "NO ***"},
		{"twice", pw + " " + pw, "*** ***"},
		{"nothing to hide", "a NO [AUTHENTICATIONFAILED] Authentication failed", "a NO [AUTHENTICATIONFAILED] Authentication failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.Redact(tt.in, user, pw); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := auth.Redact("anything", user, ""); got != "anything" {
		t.Errorf("with no password, Redact changed the text to %q", got)
	}
}
