package auth_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mailproxy/mailproxy/auth"
)

func TestStatic(t *testing.T) {
	table := auth.Static{
		"alice": {Password: "secret", Backend: "10.0.0.7:143"},
		"bob":   {Password: "pw", Backend: "10.0.0.8:143", BackendUser: "bob@internal", BackendPassword: "other"},
	}
	tests := []struct {
		name string
		req  auth.Request
		want auth.Result
	}{
		{"plain", auth.Request{Method: auth.MethodPlain, User: "alice", Password: "secret"}, auth.Result{Backend: "10.0.0.7:143"}},
		{"login", auth.Request{Method: auth.MethodLogin, User: "alice", Password: "secret"}, auth.Result{Backend: "10.0.0.7:143"}},
		{"backend credentials", auth.Request{Method: auth.MethodPlain, User: "bob", Password: "pw"},
			auth.Result{Backend: "10.0.0.8:143", User: "bob@internal", Password: "other"}},
		{"wrong password", auth.Request{Method: auth.MethodPlain, User: "alice", Password: "nope"}, auth.Result{Error: "Invalid login or password"}},
		{"unknown user", auth.Request{Method: auth.MethodPlain, User: "carol", Password: "secret"}, auth.Result{Error: "Invalid login or password"}},
		{"digest methods cannot be checked", auth.Request{Method: auth.MethodCRAMMD5, User: "alice", Password: "secret"}, auth.Result{Error: "Invalid login or password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := table.Authenticate(context.Background(), &tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Fatalf("got %+v, want %+v", *got, tt.want)
			}
			if got.OK() != (tt.want.Error == "") {
				t.Errorf("OK() = %v", got.OK())
			}
		})
	}
}

// An Authenticator is a few lines of Go: here, one that sends every user
// of a domain to that domain's backend.
func ExampleAuthenticatorFunc() {
	byDomain := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) (*auth.Result, error) {
		backends := map[string]string{"example.org": "10.0.0.7:143", "example.net": "10.0.0.8:143"}
		for domain, backend := range backends {
			if len(req.User) > len(domain) && req.User[len(req.User)-len(domain)-1:] == "@"+domain {
				return &auth.Result{Backend: backend}, nil
			}
		}
		return &auth.Result{Error: "Unknown domain"}, nil
	})
	res, _ := byDomain.Authenticate(context.Background(), &auth.Request{User: "alice@example.net"})
	fmt.Println(res.Backend)
	// Output: 10.0.0.8:143
}
