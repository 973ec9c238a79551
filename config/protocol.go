package config

import (
	"net"
	"strings"
)

// wellKnownPorts maps the ports nginx recognises to their protocol.
var wellKnownPorts = map[string]string{
	"143": "imap", "993": "imap",
	"110": "pop3", "995": "pop3",
	"25": "smtp", "587": "smtp", "465": "smtp",
}

// protocolForAddress returns the protocol a listen address implies by its
// port, as nginx detects it when a server has no protocol directive: imap
// for 143 and 993, pop3 for 110 and 995, smtp for 25, 587 and 465. It
// returns "" for any other address.
func protocolForAddress(addr string) string {
	if strings.HasPrefix(addr, "unix:") {
		return ""
	}
	port := addr
	if strings.Contains(addr, ":") {
		_, port, _ = net.SplitHostPort(addr)
	}
	return wellKnownPorts[port]
}
