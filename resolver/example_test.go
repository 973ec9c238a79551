package resolver_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/mailproxy/mailproxy/resolver"
)

// The equivalent of
//
//	resolver 127.0.0.53 [::1]:5353 valid=30s ipv6=off;
//	resolver_timeout 5s;
//
// and the Client-Host of one client. It needs a name server, so it has no
// output to check.
func ExampleResolver_ClientHost() {
	ctx := context.Background()
	r, err := resolver.New(ctx, resolver.Config{
		Servers: []string{"127.0.0.53", "[::1]:5353"},
		Valid:   30 * time.Second,
		NoIPv6:  true,
		Timeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	client := netip.MustParseAddr("192.0.2.1")
	fmt.Println("Client-Host:", r.ClientHost(ctx, client)) // a name, [UNAVAILABLE] or [TEMPUNAVAIL]
}
