package pop3_test

import (
	"context"
	"testing"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/pop3"
	"github.com/mailproxy/mailproxy/session"
)

// EXTERNAL, when configured, is announced and taken without TLS too, the
// identity prompted for when the client gives none: the Authenticator
// decides, and gives the backend password.
func TestExternal(t *testing.T) {
	var got auth.Request
	backend := ""
	route := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) (*auth.Result, error) {
		got = *req
		return &auth.Result{Backend: backend, Password: password}, nil
	})
	proxy, be := start(t, &pop3.Server{AuthMethods: []string{"plain", "external"}, Config: session.Config{Auth: route}})
	backend = be.Addr
	testutil.Dial(t, "tcp", proxy).Play([]testutil.Step{
		{"", "+OK POP3 ready"},
		{"CAPA\r\n", "+OK Capability list follows", "TOP", "USER", "UIDL", "SASL PLAIN EXTERNAL", "."},
		{"AUTH EXTERNAL\r\n", "+ "},
		{testutil.B64(user) + "\r\n", "+OK"},
		{"STAT\r\n", "+OK 1 "},
	})
	if got.Method != auth.MethodExternal || got.User != user || got.Password != "" || got.TLS != nil {
		t.Errorf("the Authenticator got %+v", got)
	}
}
