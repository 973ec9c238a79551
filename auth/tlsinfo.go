package auth

import (
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"unicode/utf8"
)

// NewTLSInfo returns the facts of a client certificate in the formats nginx
// gives them to an auth_http service, with verify as the check's result
// ("SUCCESS" or "FAILED:reason"):
//
//   - Subject and Issuer: the name as OpenSSL prints it with
//     XN_FLAG_RFC2253: the last RDN first, separated by ",", OpenSSL's
//     short attribute names ("CN", "emailAddress"), values escaped as RFC
//     2253 says and every byte of a non-ASCII character as \XX.
//   - Serial: the serial number in upper-case hex, two digits a byte.
//   - Fingerprint: the SHA-1 of the DER certificate in lower-case hex.
//   - Certificate: the certificate in PEM.
func NewTLSInfo(cert *x509.Certificate, verify string) *TLSInfo {
	sum := sha1.Sum(cert.Raw)
	return &TLSInfo{
		Verify:      verify,
		Subject:     distinguishedName(cert.RawSubject),
		Issuer:      distinguishedName(cert.RawIssuer),
		Serial:      serialHex(cert),
		Fingerprint: hex.EncodeToString(sum[:]),
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
	}
}

func serialHex(cert *x509.Certificate) string {
	b := cert.SerialNumber.Bytes()
	if len(b) == 0 {
		return "00"
	}
	s := fmt.Sprintf("%X", b)
	if cert.SerialNumber.Sign() < 0 {
		s = "-" + s
	}
	return s
}

// shortNames are OpenSSL's short names of the attribute types a
// certificate name usually holds.
var shortNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.17":                   "postalCode",
	"2.5.4.42":                   "GN",
	"2.5.4.43":                   "initials",
	"2.5.4.46":                   "dnQualifier",
	"2.5.4.65":                   "pseudonym",
	"1.2.840.113549.1.9.1":       "emailAddress",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
}

// distinguishedName prints a DER-encoded name as OpenSSL's
// X509_NAME_print_ex does with XN_FLAG_RFC2253. A name that does not parse
// is printed empty.
func distinguishedName(der []byte) string {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdns); err != nil || len(rest) > 0 {
		return ""
	}
	var b strings.Builder
	// OpenSSL keeps a name as one list of attributes and prints it
	// backwards, so the attributes of a multi-valued RDN come reversed too.
	for i := len(rdns) - 1; i >= 0; i-- {
		for j := len(rdns[i]) - 1; j >= 0; j-- {
			switch {
			case j < len(rdns[i])-1:
				b.WriteByte('+')
			case i < len(rdns)-1:
				b.WriteByte(',')
			}
			writeAttribute(&b, rdns[i][j])
		}
	}
	return b.String()
}

func writeAttribute(b *strings.Builder, atv pkix.AttributeTypeAndValue) {
	oid := atv.Type.String()
	name, known := shortNames[oid]
	if !known {
		name = oid
	}
	b.WriteString(name)
	b.WriteByte('=')
	s, isString := atv.Value.(string)
	if !known || !isString {
		// OpenSSL dumps unknown attributes as "#" and the DER in hex.
		der, err := asn1.Marshal(atv.Value)
		if err == nil {
			b.WriteByte('#')
			b.WriteString(strings.ToUpper(hex.EncodeToString(der)))
		}
		return
	}
	writeEscaped(b, s)
}

// writeEscaped writes an attribute value with OpenSSL's RFC 2253 escapes:
// a backslash before , + " \ < > ; and before a leading "#" or space or a
// trailing space; \XX for control characters and for each byte of a
// non-ASCII character.
func writeEscaped(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f || c >= utf8.RuneSelf:
			fmt.Fprintf(b, "\\%02X", c)
		case strings.IndexByte(",+\"\\<>;", c) >= 0,
			i == 0 && (c == '#' || c == ' '),
			i == len(s)-1 && c == ' ':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}
