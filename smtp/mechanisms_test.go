package smtp_test

import (
	"strings"
	"testing"

	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// The AUTH line lists smtp_auth's mechanisms in nginx's order, whatever
// order the directive gives; PLAIN and LOGIN are taken even when it does
// not name them, smtp_auth none included, as nginx takes them; CRAM-MD5
// and EXTERNAL only when named.
func TestMechanisms(t *testing.T) {
	be := startBackend(t)
	plain := "AUTH PLAIN " + testutil.B64("\x00alice\x00secret") + "\r\n"
	tests := []struct {
		name    string
		methods []string
		steps   []testutil.Step
	}{
		{"nginx's order", []string{"external", "cram-md5", "login", "plain"}, []testutil.Step{
			{"EHLO c.test\r\n", "250-proxy.test", "250 AUTH PLAIN LOGIN CRAM-MD5 EXTERNAL"},
		}},
		{"LOGIN taken with plain alone", []string{"plain"}, []testutil.Step{
			{"EHLO c.test\r\n", "250-proxy.test", "250 AUTH PLAIN"},
			{"AUTH CRAM-MD5\r\n", "504 5.5.4 Unrecognized authentication type"},
			{"AUTH EXTERNAL\r\n", "504 5.5.4 Unrecognized authentication type"},
			{"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6"},
			{testutil.B64("alice") + "\r\n", "334 UGFzc3dvcmQ6"},
			{testutil.B64("secret") + "\r\n", "235 2.0.0 OK"},
		}},
		{"a response beyond the client buffer ends the session", []string{"plain"}, []testutil.Step{
			{"AUTH PLAIN\r\n", "334 "},
			{strings.Repeat("A", 5000) + "\r\n", "500 5.5.6 Line too long", "<closed>"},
		}},
		{"PLAIN taken with smtp_auth none", []string{"none"}, []testutil.Step{
			{"EHLO c.test\r\n", "250 proxy.test"},
			{plain, "235 2.0.0 OK"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, &smtp.Server{AuthMethods: tt.methods, Config: session.Config{Auth: table(be.Addr)}})
			c := testutil.Dial(t, "tcp", addr)
			c.Exchange("", "220 proxy.test ESMTP ready")
			c.Play(tt.steps)
		})
	}
}
