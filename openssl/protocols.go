package openssl

import "crypto/tls"

// OpenSSL's numbers of the versions crypto/tls does not have.
const (
	versionSSL2 uint16 = 0x0002
	versionSSL3 uint16 = 0x0300
)

// protocols are OpenSSL's names of the protocol versions, oldest first,
// with OpenSSL's version numbers (SSL2_VERSION … TLS1_3_VERSION), which
// for TLS are those of crypto/tls.
var protocols = []struct {
	name    string
	version uint16
}{
	{"SSLv2", versionSSL2},
	{"SSLv3", versionSSL3},
	{"TLSv1", tls.VersionTLS10},
	{"TLSv1.1", tls.VersionTLS11},
	{"TLSv1.2", tls.VersionTLS12},
	{"TLSv1.3", tls.VersionTLS13},
}

// ProtocolVersion returns the version number of a protocol named as
// OpenSSL names it (the MinProtocol and MaxProtocol commands, nginx's
// ssl_protocols): "TLSv1" is tls.VersionTLS10, "TLSv1.2"
// tls.VersionTLS12. The name's case matters, and "TLSv1.0" is not a
// name.
//
// "SSLv2" and "SSLv3", which crypto/tls does not have, are known: their
// numbers are OpenSSL's, 0x0002 and 0x0300, below tls.VersionTLS10, so
// that versions compare in their order.
func ProtocolVersion(name string) (version uint16, ok bool) {
	for _, p := range protocols {
		if p.name == name {
			return p.version, true
		}
	}
	return 0, false
}

// ProtocolName returns OpenSSL's name of a version that ProtocolVersion
// knows, such as "TLSv1.2" for tls.VersionTLS12, or "" for another.
func ProtocolName(version uint16) string {
	for _, p := range protocols {
		if p.version == version {
			return p.name
		}
	}
	return ""
}
