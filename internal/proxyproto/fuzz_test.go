package proxyproto

import (
	"io"
	"net"
	"testing"
	"time"
)

// FuzzProxyHeader feeds any bytes as a connection's start: the header
// reader never panics or hangs, whether it accepts the header or not, and
// what follows an accepted header can be read to the end.
func FuzzProxyHeader(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 192.0.2.7 198.51.100.1 5555 993\r\nrest",
		"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY TCP4 999.0.0.1 1.1.1.1 1 2\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x07\xc6\x33\x64\x01\x15\xb3\x03\xe1rest",
		"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00",
		"a LOGIN u p\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		client, server := net.Pipe()
		go func() {
			io.WriteString(client, input)
			client.Close()
		}()
		c := NewConn(server, true, time.Second)
		defer c.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if c.Handshake() != nil {
				return
			}
			c.RemoteAddr()
			c.Announced()
			io.Copy(io.Discard, c)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("header reader hung")
		}
	})
}
