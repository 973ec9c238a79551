package auth_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/mailproxy/mailproxy/auth"
)

// The auth_http protocol of nginx: the service answers in response
// headers, here from a stand-in written with net/http.
func ExampleHTTP() {
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Auth-User") != "alice" {
			w.Header().Set("Auth-Status", "Invalid login or password")
			w.Header().Set("Auth-Wait", "3")
			return
		}
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", "10.0.0.7")
		w.Header().Set("Auth-Port", "143")
	}))
	defer service.Close()

	h := &auth.HTTP{URL: service.URL + "/auth", Timeout: 5 * time.Second}
	defer h.Close()
	for _, user := range []string{"alice", "mallory"} {
		res, err := h.Authenticate(context.Background(), &auth.Request{Protocol: "imap", Method: auth.MethodPlain, User: user, Password: "secret"})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: backend %q, error %q, wait %v\n", user, res.Backend, res.Error, res.Wait)
	}
	// Output:
	// alice: backend "10.0.0.7:143", error "", wait 0s
	// mallory: backend "", error "Invalid login or password", wait 3s
}

// A fixed table of users, for tests, demos and small installations.
func ExampleStatic() {
	users := auth.Static{
		"alice": {Password: "secret", Backend: "10.0.0.7:143"},
		"bob":   {Password: "hunter2", Backend: "10.0.0.8:143", BackendUser: "bob@internal"},
	}
	res, _ := users.Authenticate(context.Background(), &auth.Request{Method: auth.MethodPlain, User: "bob", Password: "hunter2"})
	fmt.Println(res.Backend, res.User)
	res, _ = users.Authenticate(context.Background(), &auth.Request{Method: auth.MethodPlain, User: "bob", Password: "guess"})
	fmt.Println(res.Error)
	// Output:
	// 10.0.0.8:143 bob@internal
	// Invalid login or password
}
