package imap_test

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/imap"
	"github.com/mailproxy/mailproxy/session"
)

// A imap server on a listener of the program's own, without a Proxy:
// alice's sessions go to the backend at 10.0.0.7.
func ExampleServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &imap.Server{Config: session.Config{
		ServerName: "mail.example.org",
		Auth:       auth.Static{"alice": {Password: "secret", Backend: "10.0.0.7:143"}},
	}}
	go srv.Serve(ln)
	defer srv.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	greeting, _ := r.ReadString('\n')
	fmt.Fprint(c, "a LOGIN alice wrong\r\n")
	reply, _ := r.ReadString('\n')
	fmt.Println(strings.TrimSpace(greeting))
	fmt.Println(strings.TrimSpace(reply))
	// Output:
	// * OK [CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN] IMAP4 ready
	// a NO [AUTHENTICATIONFAILED] Invalid login or password
}
