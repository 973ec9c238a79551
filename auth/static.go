package auth

import (
	"context"
	"crypto/subtle"
)

// Account is one entry of a [Static] table.
type Account struct {
	Password string // the password the client must give
	Backend  string // host:port of the backend serving this user
	// BackendUser and BackendPassword, when set, are used to log in to the
	// backend instead of the client's own credentials.
	BackendUser     string
	BackendPassword string
}

// Static is an Authenticator backed by a fixed table of users, for tests,
// demos and small installations. Only methods that reveal the clear-text
// password (plain, login) can be checked against it.
type Static map[string]Account

// Authenticate checks req against the table.
func (s Static) Authenticate(_ context.Context, req *Request) (*Result, error) {
	acct, ok := s[req.User]
	if !ok || !clearText(req.Method) || subtle.ConstantTimeCompare([]byte(acct.Password), []byte(req.Password)) != 1 {
		return &Result{Error: "Invalid login or password"}, nil
	}
	return &Result{Backend: acct.Backend, User: acct.BackendUser, Password: acct.BackendPassword}, nil
}

func clearText(m Method) bool { return m == MethodPlain || m == MethodLogin }

var _ Authenticator = Static(nil)
