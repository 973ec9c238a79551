package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/auth"
)

// selfSigned makes a certificate whose subject and issuer are name.
func selfSigned(t *testing.T, name pkix.RDNSequence, serial *big.Int) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := asn1.Marshal(name)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, RawSubject: raw, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func attr(oid asn1.ObjectIdentifier, v any) pkix.AttributeTypeAndValue {
	return pkix.AttributeTypeAndValue{Type: oid, Value: v}
}

var (
	oidCN     = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO      = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU     = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidC      = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidEmail  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidDC     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	oidCustom = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
)

// The names nginx passes as Auth-SSL-Subject and Auth-SSL-Issuer, as
// OpenSSL's XN_FLAG_RFC2253 prints them.
var nameTests = []struct {
	name   string
	rdns   pkix.RDNSequence
	serial int64
	want   string
}{
	{"plain", pkix.RDNSequence{{attr(oidC, "DE")}, {attr(oidO, "Example")}, {attr(oidCN, "alice")}}, 1,
		"CN=alice,O=Example,C=DE"},
	{"specials", pkix.RDNSequence{{attr(oidO, `a,b+c"d\e<f>g;h`)}, {attr(oidCN, "#lead and trail ")}}, 255,
		`CN=\#lead and trail\ ,O=a\,b\+c\"d\\e\<f\>g\;h`},
	{"leading space", pkix.RDNSequence{{attr(oidCN, " x")}}, 256, `CN=\ x`},
	{"non-ASCII", pkix.RDNSequence{{attr(oidCN, "Jürgen")}}, 65535, `CN=J\C3\BCrgen`},
	{"email and DC", pkix.RDNSequence{{attr(oidDC, "org")}, {attr(oidDC, "example")}, {attr(oidEmail, "a@example.org")}}, 1 << 40,
		"emailAddress=a@example.org,DC=example,DC=org"},
	{"multi-valued", pkix.RDNSequence{{attr(oidOU, "mail"), attr(oidCN, "bob")}}, 7, "OU=mail+CN=bob"},
	{"unknown attribute", pkix.RDNSequence{{attr(oidCustom, "v")}, {attr(oidCN, "c")}}, 8, "CN=c,1.3.6.1.4.1.99999.1=#130176"},
	{"control character", pkix.RDNSequence{{attr(oidCN, "a\x01b")}}, 9, `CN=a\01b`},
}

func TestNewTLSInfoNames(t *testing.T) {
	for _, tt := range nameTests {
		t.Run(tt.name, func(t *testing.T) {
			cert := selfSigned(t, tt.rdns, big.NewInt(tt.serial))
			info := auth.NewTLSInfo(cert, "SUCCESS")
			if info.Subject != tt.want || info.Issuer != tt.want {
				t.Errorf("subject %q, issuer %q, want %q", info.Subject, info.Issuer, tt.want)
			}
		})
	}
}

// Every field, byte for byte against what OpenSSL prints for the same
// certificate with the functions nginx calls: X509_NAME_print_ex with
// XN_FLAG_RFC2253, i2a_ASN1_INTEGER, and the SHA-1 digest (nginx writes
// it in lower-case hex without colons).
func TestNewTLSInfoMatchesOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	for _, tt := range nameTests {
		t.Run(tt.name, func(t *testing.T) {
			cert := selfSigned(t, tt.rdns, big.NewInt(tt.serial))
			info := auth.NewTLSInfo(cert, "SUCCESS")
			file := filepath.Join(t.TempDir(), "cert.pem")
			if err := os.WriteFile(file, []byte(info.Certificate), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(openssl, "x509", "-in", file, "-noout", "-nameopt", "RFC2253",
				"-subject", "-issuer", "-serial", "-fingerprint", "-sha1").Output()
			if err != nil {
				t.Fatal(err)
			}
			fields := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				k, v, _ := strings.Cut(line, "=")
				fields[k] = v
			}
			fingerprint := strings.ToLower(strings.ReplaceAll(fields["sha1 Fingerprint"]+fields["SHA1 Fingerprint"], ":", ""))
			for _, f := range []struct{ name, got, want string }{
				{"subject", info.Subject, fields["subject"]},
				{"issuer", info.Issuer, fields["issuer"]},
				{"serial", info.Serial, fields["serial"]},
				{"fingerprint", info.Fingerprint, fingerprint},
			} {
				if f.got != f.want {
					t.Errorf("%s: %q, OpenSSL %q", f.name, f.got, f.want)
				}
			}
		})
	}
}
