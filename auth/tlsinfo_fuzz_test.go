package auth

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"
)

// FuzzDistinguishedName feeds names from client certificates, which come
// from the network, to the printer of Auth-SSL-Subject and -Issuer: it
// must never panic, and what it prints must fit in a header line.
func FuzzDistinguishedName(f *testing.F) {
	for _, name := range []pkix.Name{
		{CommonName: "alice", Organization: []string{"Example, Inc."}},
		{CommonName: "J\u00fcrgen\x01", Country: []string{"DE"}, ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{1, 2, 3}, Value: "x"}}},
	} {
		der, _ := asn1.Marshal(name.ToRDNSequence())
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x03, 0x31, 0x01, 0x30})
	f.Fuzz(func(t *testing.T, der []byte) {
		dn := distinguishedName(der)
		if strings.ContainsFunc(dn, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
			t.Fatalf("unescaped byte in %q", dn)
		}
	})
}
