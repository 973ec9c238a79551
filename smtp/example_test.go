package smtp_test

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"strings"

	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/session"
	"github.com/mailproxy/mailproxy/smtp"
)

// A smtp server on a listener of the program's own, without a Proxy:
// alice's sessions go to the backend at 10.0.0.7.
func ExampleServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &smtp.Server{Config: session.Config{
		ServerName: "mail.example.org",
		Auth:       auth.Static{"alice": {Password: "secret", Backend: "10.0.0.7:25"}},
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
	fmt.Fprint(c, "EHLO client.example.org\r\n")
	reply, _ := r.ReadString('\n')
	fmt.Println(strings.TrimSpace(greeting))
	fmt.Println(strings.TrimSpace(reply))
	// Output:
	// 220 mail.example.org ESMTP ready
	// 250-mail.example.org
}
