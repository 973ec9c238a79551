package auth

import (
	"net"
	"net/http"
	"strconv"
	"strings"
)

// requestHeader builds the headers nginx sends to an auth_http service for
// req, with extra appended (auth_http_header). Names are set as nginx
// writes them ("Client-IP", not Go's canonical "Client-Ip").
func requestHeader(req *Request, extra [][2]string, passCert bool) http.Header {
	h := http.Header{"User-Agent": {""}} // an empty User-Agent is not sent
	set := func(name, value string) { h[name] = append(h[name], value) }
	set("Auth-Method", wireMethod(req.Method))
	set("Auth-User", escape(req.User))
	set("Auth-Pass", escape(req.Password))
	if req.Salt != "" && !clearText(req.Method) {
		set("Auth-Salt", req.Salt)
	}
	set("Auth-Protocol", req.Protocol)
	set("Auth-Login-Attempt", strconv.Itoa(max(req.Attempt, 1)))
	if ip, _ := splitAddr(req.ClientAddr); ip != "" {
		set("Client-IP", ip)
	}
	if req.ClientHost != "" {
		set("Client-Host", req.ClientHost)
	}
	if req.Method == MethodNone {
		set("Auth-SMTP-Helo", escapeControls(req.SMTPHelo))
		set("Auth-SMTP-From", escapeControls(req.SMTPFrom))
		for _, to := range req.SMTPTo {
			set("Auth-SMTP-To", escapeControls(to))
		}
	}
	addTLS(set, req.TLS, passCert)
	addProxy(set, req.Proxy)
	for _, kv := range extra {
		set(kv[0], kv[1])
	}
	return h
}

// wireMethod names a method as nginx's Auth-Method does: SASL LOGIN is
// reported as plain.
func wireMethod(m Method) string {
	if m == MethodLogin {
		return string(MethodPlain)
	}
	return string(m)
}

func addTLS(set func(name, value string), t *TLSInfo, passCert bool) {
	if t == nil {
		return
	}
	set("Auth-SSL", "on")
	for _, f := range []struct{ name, value string }{
		{"Auth-SSL-Protocol", t.Protocol},
		{"Auth-SSL-Cipher", t.Cipher},
		{"Auth-SSL-Verify", t.Verify},
		{"Auth-SSL-Subject", t.Subject},
		{"Auth-SSL-Issuer", t.Issuer},
		{"Auth-SSL-Serial", t.Serial},
		{"Auth-SSL-Fingerprint", t.Fingerprint},
	} {
		if f.value != "" {
			set(f.name, escapeControls(f.value))
		}
	}
	if passCert && t.Certificate != "" {
		set("Auth-SSL-Cert", escape(t.Certificate))
	}
}

func addProxy(set func(name, value string), p *ProxyInfo) {
	if p == nil {
		return
	}
	if ip, port := splitAddr(p.Source); ip != "" {
		set("Proxy-Protocol-Addr", ip)
		set("Proxy-Protocol-Port", port)
	}
	if ip, port := splitAddr(p.Destination); ip != "" {
		set("Proxy-Protocol-Server-Addr", ip)
		set("Proxy-Protocol-Server-Port", port)
	}
}

// splitAddr returns the IP and port of a TCP address; for other addresses
// (a unix socket peer) the IP is "unix:".
func splitAddr(a net.Addr) (ip, port string) {
	if a == nil {
		return "", ""
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String(), strconv.Itoa(t.Port)
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "unix:", ""
	}
	return host, port
}

const upperHex = "0123456789ABCDEF"

// escape encodes s as nginx encodes Auth-User, Auth-Pass and Auth-SSL-Cert:
// control characters, DEL, space and "%" become %XX (nginx leaves DEL, but
// HTTP forbids it in a header); every other byte stays.
// An auth service decodes it with ordinary URL unescaping.
func escape(s string) string {
	return escapeSet(s, func(c byte) bool { return c < 0x20 || c == 0x7f || c == ' ' || c == '%' })
}

// escapeControls encodes the control characters of s only, so that a
// value can never break the header it is written into.
func escapeControls(s string) string {
	return escapeSet(s, func(c byte) bool { return c < 0x20 || c == 0x7f })
}

func escapeSet(s string, escape func(byte) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if escape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escape(c) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
