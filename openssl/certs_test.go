package openssl

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseCertificates(t *testing.T) {
	rsa, ecdsa := testCerts(t)
	file := slices.Concat(rsa.KeyPEM(), rsa.CertPEM(), pemBlock("TRUSTED CERTIFICATE", ecdsa.DER), pemBlock("X509 CRL", []byte{1}))
	certs, err := ParseCertificates(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(rsa.Cert) || !certs[1].Equal(ecdsa.Cert) {
		t.Errorf("%d certificates, or not in order", len(certs))
	}
	for _, tt := range []struct {
		name string
		file []byte
		want string
	}{
		{"none", rsa.KeyPEM(), "no PEM certificate found"},
		{"not PEM", []byte("nonsense"), "no PEM certificate found"},
		{"a bad second", append(rsa.CertPEM(), pemBlock("CERTIFICATE", []byte{0, 0, 0})...), "certificate 2: x509: malformed certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseCertificates(tt.file); err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
}

func TestParseCRLs(t *testing.T) {
	ca := testutil.NewCA(t, "CRL test CA")
	var file []byte
	for n := range int64(2) {
		crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(n + 1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
		}, ca.Cert, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		file = append(file, pemBlock("X509 CRL", crl)...)
	}
	file = append(file, ca.CertPEM()...)
	crls, err := ParseCRLs(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(crls) != 2 || crls[0].Number.Int64() != 1 || crls[1].Number.Int64() != 2 {
		t.Errorf("%d CRLs, or not in order", len(crls))
	}
	if _, err := ParseCRLs(ca.CertPEM()); err == nil || err.Error() != "no PEM X509 CRL found" {
		t.Errorf("no CRL: %v", err)
	}
	if _, err := ParseCRLs(pemBlock("X509 CRL", []byte("nonsense"))); err == nil || err.Error() != "CRL 1: x509: malformed crl" {
		t.Errorf("bad CRL: %v", err)
	}
}

func TestCheckDHParams(t *testing.T) {
	dh, err := asn1.Marshal(struct{ P, G *big.Int }{big.NewInt(23), big.NewInt(5)}) // the shape, not real parameters
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"DH PARAMETERS", "X9.42 DH PARAMETERS"} {
		if err := CheckDHParams(pemBlock(typ, dh)); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
	if err := CheckDHParams(pemBlock("EC PARAMETERS", dh)); err == nil || err.Error() != "no PEM DH PARAMETERS found" {
		t.Errorf("no DH parameters: %v", err)
	}
	if err := CheckDHParams(pemBlock("DH PARAMETERS", []byte{0x30})); err == nil {
		t.Error("bad DER taken")
	}
}

func TestKeyPair(t *testing.T) {
	rsa, ecdsa := testCerts(t)
	chain := []*x509.Certificate{rsa.Cert, ecdsa.Cert}
	pair, err := KeyPair(chain, rsa.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(pair.Certificate, [][]byte{rsa.DER, ecdsa.DER}, bytes.Equal) || pair.Leaf != rsa.Cert || pair.PrivateKey != rsa.Key {
		t.Errorf("got %+v", pair)
	}
	if _, err := KeyPair(chain, ecdsa.Key); !errors.Is(err, ErrKeyMismatch) || err.Error() != "key values mismatch" {
		t.Errorf("key of another certificate: %v", err)
	}
	if _, err := KeyPair(nil, rsa.Key); err == nil {
		t.Error("a pair without a certificate")
	}
}

func TestParseGroups(t *testing.T) {
	tests := []struct {
		in          string
		want        []tls.CurveID
		unsupported []string
	}{
		{"X25519:prime256v1:secp384r1", []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}, nil},
		{"P-521:secp521r1:p-256:SECP256R1", []tls.CurveID{tls.CurveP521, tls.CurveP256}, nil},
		{"?X448:*X25519MLKEM768/x25519:ffdhe2048", []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, []string{"?X448", "ffdhe2048"}},
		{"SecP256r1MLKEM768:SecP384r1MLKEM1024", []tls.CurveID{tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, unsupported, err := ParseGroups(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) || !slices.Equal(unsupported, tt.unsupported) {
				t.Errorf("got %v %q, want %v %q", got, unsupported, tt.want, tt.unsupported)
			}
		})
	}
	for _, in := range []string{"", "auto", "X448:ffdhe2048"} {
		if _, _, err := ParseGroups(in); err == nil || err.Error() != `no curve crypto/tls supports in "`+in+`"` {
			t.Errorf("%q: error %v", in, err)
		}
	}
}
