package config_test

import (
	"fmt"
	"log"
	"log/slog"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/config"
)

// Load an nginx-style mail block and run it with a mailproxy.Proxy.
func ExampleLoadBytes() {
	src := []byte(`
		mail {
			auth_http 127.0.0.1:9000/auth;
			server { listen 127.0.0.1:0; protocol imap; }
			server { listen 127.0.0.1:0; protocol smtp; timeout 30s; }
		}`)
	cfg, err := config.LoadBytes("inline.conf", src, ".", config.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range cfg.Proxy.Servers {
		fmt.Printf("%s %T\n", s.Name, s.Server)
	}
	p := &mailproxy.Proxy{Config: cfg.Proxy}
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	fmt.Println(len(p.Addrs()), "sockets")
	// Output:
	// inline.conf:4 *imap.Server
	// inline.conf:5 *smtp.Server
	// 2 sockets
}
