package resolver

import (
	"net/netip"
	"strconv"
	"strings"
)

// maxNames bounds the PTR records of one answer that are tried.
const maxNames = 10

// reverseName returns the PTR question for ip: "4.3.2.1.in-addr.arpa."
// for 1.2.3.4, 32 nibbles under "ip6.arpa." for an IPv6 address.
func reverseName(ip netip.Addr) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		for i := len(a) - 1; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	a := ip.As16()
	for i := len(a) - 1; i >= 0; i-- {
		b.WriteByte(hex[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[a[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

// hostName checks that a PTR target is a host name (letters, digits and
// hyphens in labels of at most 63 bytes, none starting or ending with a
// hyphen; 253 bytes in all) and returns it lower-case without the final dot.
func hostName(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(name, ".") {
		if !validLabel(label) {
			return "", false
		}
	}
	return strings.ToLower(name), true
}

func validLabel(label string) bool {
	if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
