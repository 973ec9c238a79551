package smtp_test

import (
	"context"
	"testing"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// EXTERNAL, when configured, is announced and taken with or without TLS,
// with the identity prompted for when the client gives none; the
// Authenticator sees an empty password. Under proxy_smtp_auth the backend
// login needs a password the Authenticator must give: without one, as in
// nginx, the client gets a temporary failure.
func TestExternal(t *testing.T) {
	be := startBackend(t)
	tests := []struct {
		name        string
		backendAuth bool
		password    string // the Authenticator's backend password
		want        string
	}{
		{"xclient", false, "", "235 2.0.0 OK"},
		{"proxy_smtp_auth with a password", true, password, "235 2.0.0 OK"},
		{"proxy_smtp_auth without a password", true, "", "451 4.3.0 Temporary authentication failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got auth.Request
			route := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
				got = *req
				return &auth.Result{Backend: be.Addr, Password: tt.password}, nil
			})
			addr := serve(t, &smtp.Server{AuthMethods: []string{"external"}, BackendAuth: tt.backendAuth, Config: session.Config{Auth: route}})
			testutil.Dial(t, "tcp", addr).Play([]testutil.Step{
				{"", "220 proxy.test ESMTP ready"},
				{"EHLO c.test\r\n", "250-proxy.test", "250 AUTH EXTERNAL"},
				{"AUTH EXTERNAL\r\n", "334 "},
				{testutil.B64("alice") + "\r\n", tt.want},
			})
			if got.Method != auth.MethodExternal || got.User != "alice" || got.Password != "" || got.TLS != nil {
				t.Errorf("the Authenticator got %+v", got)
			}
		})
	}
}
