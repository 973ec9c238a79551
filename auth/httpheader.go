package auth

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// appendRequest appends to b the request nginx sends to an auth_http
// service for req, with nginx's headers in nginx's order, then the extra
// ones (auth_http_header). Names are written as nginx writes them
// ("Client-IP", not Go's canonical "Client-Ip"); values are trimmed, and
// their control characters escaped, so that none can break its line.
func (h *HTTP) appendRequest(b []byte, req *Request, keepAlive bool) []byte {
	b = append(b, h.head...)
	if keepAlive {
		b = append(b, "Connection: keep-alive\r\n"...)
	} else {
		b = append(b, "Connection: close\r\n"...)
	}
	b = appendHeader(b, "Auth-Method", wireMethod(req.Method))
	b = appendHeader(b, "Auth-User", escape(req.User))
	b = appendHeader(b, "Auth-Pass", escape(req.Password))
	if req.Salt != "" && !clearText(req.Method) {
		b = appendHeader(b, "Auth-Salt", req.Salt)
	}
	b = appendHeader(b, "Auth-Protocol", req.Protocol)
	b = append(b, "Auth-Login-Attempt: "...)
	b = append(strconv.AppendInt(b, int64(max(req.Attempt, 1)), 10), "\r\n"...)
	if req.ClientAddr != nil {
		b = append(b, "Client-IP: "...)
		b = append(appendIP(b, req.ClientAddr), "\r\n"...)
	}
	if req.ClientHost != "" {
		b = appendHeader(b, "Client-Host", req.ClientHost)
	}
	if req.Method == MethodNone {
		b = appendHeader(b, "Auth-SMTP-Helo", req.SMTPHelo)
		b = appendHeader(b, "Auth-SMTP-From", req.SMTPFrom)
		for _, to := range req.SMTPTo {
			b = appendHeader(b, "Auth-SMTP-To", to)
		}
	}
	b = appendTLS(b, req.TLS, h.PassClientCert)
	b = appendProxy(b, req.Proxy)
	b = append(b, h.extra...)
	return append(b, "\r\n"...)
}

// appendHeader appends a header line. The value is trimmed of spaces and
// its control characters are written as %XX.
func appendHeader(b []byte, name, value string) []byte {
	b = append(append(b, name...), ": "...)
	value = strings.Trim(value, " ")
	for {
		i := strings.IndexFunc(value, func(r rune) bool { return r < 0x20 || r == 0x7f })
		if i < 0 {
			break
		}
		c := value[i]
		b = append(append(b, value[:i]...), '%', upperHex[c>>4], upperHex[c&15])
		value = value[i+1:]
	}
	return append(append(b, value...), "\r\n"...)
}

// extraHeaders writes the auth_http_header lines, refusing a name that is
// not an HTTP token and a value with control characters. Values are
// trimmed.
func extraHeaders(extra [][2]string) (string, error) {
	var b strings.Builder
	for _, kv := range extra {
		name, value := kv[0], strings.Trim(kv[1], " \t")
		if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r >= 0x80 || !isTokenByte(byte(r)) }) {
			return "", fmt.Errorf("auth_http_header: invalid name %q", name)
		}
		if strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return "", fmt.Errorf("auth_http_header %s: control character in the value", name)
		}
		b.WriteString(name + ": " + value + "\r\n")
	}
	return b.String(), nil
}

// wireMethod names a method as nginx's Auth-Method does: SASL LOGIN is
// reported as plain.
func wireMethod(m Method) string {
	if m == MethodLogin {
		return string(MethodPlain)
	}
	return string(m)
}

func appendTLS(b []byte, t *TLSInfo, passCert bool) []byte {
	if t == nil {
		return b
	}
	b = append(b, "Auth-SSL: on\r\n"...)
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
			b = appendHeader(b, f.name, f.value)
		}
	}
	if passCert && t.Certificate != "" {
		b = appendHeader(b, "Auth-SSL-Cert", escape(t.Certificate))
	}
	return b
}

func appendProxy(b []byte, p *ProxyInfo) []byte {
	if p == nil {
		return b
	}
	if ip, port := splitAddr(p.Source); ip != "" {
		b = appendHeader(b, "Proxy-Protocol-Addr", ip)
		b = appendHeader(b, "Proxy-Protocol-Port", port)
	}
	if ip, port := splitAddr(p.Destination); ip != "" {
		b = appendHeader(b, "Proxy-Protocol-Server-Addr", ip)
		b = appendHeader(b, "Proxy-Protocol-Server-Port", port)
	}
	return b
}

// appendIP appends the IP of a, as net.IP's String writes it; an address
// that is not an IP address (a unix socket peer) is "unix:".
func appendIP(b []byte, a net.Addr) []byte {
	if t, ok := a.(*net.TCPAddr); ok && t != nil {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap().AppendTo(b)
		}
	}
	ip, _ := splitAddr(a)
	return append(b, ip...)
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
