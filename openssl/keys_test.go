package openssl

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

// Test keys, made once per run: an RSA key is slow to make.
var (
	keysOnce         sync.Once
	rsaCert, ecdCert *testutil.Cert
)

func testCerts(t testing.TB) (rsa, ecdsa *testutil.Cert) {
	t.Helper()
	keysOnce.Do(func() {
		ca := testutil.NewCA(t, "openssl test CA")
		rsaCert = ca.Issue(t, testutil.CertOptions{Key: testutil.RSA})
		ecdCert = ca.Issue(t, testutil.CertOptions{Key: testutil.ECDSA})
	})
	if rsaCert == nil || ecdCert == nil {
		t.Fatal("test certificates could not be made")
	}
	return rsaCert, ecdCert
}

// pkcs8Encrypted encrypts c's key as a PKCS#8 ENCRYPTED PRIVATE KEY with
// PBES2: PBKDF2 with the HMAC prf (nil for the default, SHA-1), then enc.
func pkcs8Encrypted(t testing.TB, c *testutil.Cert, password string, prf, enc asn1.ObjectIdentifier) []byte {
	t.Helper()
	newHash, err := pbkdf2PRF(prf)
	if err != nil {
		t.Fatal(err)
	}
	newCipher, keyLen, err := pbes2Cipher(enc)
	if err != nil {
		t.Fatal(err)
	}
	return c.EncryptedKeyPEM(t, password, testutil.PBES2{PRF: prf, Hash: newHash, Cipher: enc, NewCipher: newCipher, KeyLen: keyLen})
}

// opensslPKCS8 has the openssl command encrypt c's key; args choose the
// scheme.
func opensslPKCS8(t *testing.T, c *testutil.Cert, password string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	in := filepath.Join(t.TempDir(), "plain.key")
	if err := os.WriteFile(in, c.KeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("openssl", append([]string{"pkcs8", "-topk8", "-in", in, "-passout", "pass:" + password}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl pkcs8: %v", err)
	}
	return out
}

func TestEncryptedKeys(t *testing.T) {
	rsa, ecdsa := testCerts(t)
	const pw = "correct horse"
	tests := []struct {
		name string
		cert *testutil.Cert
		key  func(t *testing.T) []byte
	}{
		{"legacy PEM, RSA, AES-256", rsa, func(t *testing.T) []byte { return rsa.LegacyEncryptedKeyPEM(t, pw, x509.PEMCipherAES256) }},
		{"legacy PEM, EC, 3DES", ecdsa, func(t *testing.T) []byte { return ecdsa.LegacyEncryptedKeyPEM(t, pw, x509.PEMCipher3DES) }},
		{"PKCS#8, SHA-1, AES-128", ecdsa, func(t *testing.T) []byte { return pkcs8Encrypted(t, ecdsa, pw, nil, oidAES128CBC) }},
		{"PKCS#8, SHA-256, AES-192", rsa, func(t *testing.T) []byte { return pkcs8Encrypted(t, rsa, pw, oidHMACSHA256, oidAES192CBC) }},
		{"PKCS#8, SHA-256, AES-256", ecdsa, func(t *testing.T) []byte { return pkcs8Encrypted(t, ecdsa, pw, oidHMACSHA256, oidAES256CBC) }},
		{"PKCS#8, SHA-512, 3DES", ecdsa, func(t *testing.T) []byte { return pkcs8Encrypted(t, ecdsa, pw, oidHMACSHA512, oidDESEDE3CBC) }},
		{"openssl pkcs8 -v2 aes256", rsa, func(t *testing.T) []byte { return opensslPKCS8(t, rsa, pw, "-v2", "aes256") }},
		{"openssl pkcs8 -v2 aes128 -v2prf hmacWithSHA1", ecdsa, func(t *testing.T) []byte {
			return opensslPKCS8(t, ecdsa, pw, "-v2", "aes128", "-v2prf", "hmacWithSHA1")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyPEM := tt.key(t)
			key, err := ParsePrivateKey(keyPEM, []string{"wrong", "", pw})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.cert.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("another key came out")
			}
			_, err = ParsePrivateKey(keyPEM, []string{"wrong", "Correct horse"})
			if !errors.Is(err, ErrBadDecrypt) || err.Error() != "bad decrypt" {
				t.Errorf("wrong passwords: %v", err)
			}
			for _, none := range [][]string{nil, {}} {
				_, err = ParsePrivateKey(keyPEM, none)
				if !errors.Is(err, ErrNoPassword) || err.Error() != "the key is encrypted and no password is given" {
					t.Errorf("no password: %v", err)
				}
			}
		})
	}
}

func TestPKCS8Errors(t *testing.T) {
	_, ecdsa := testCerts(t)
	good, _ := pem.Decode(pkcs8Encrypted(t, ecdsa, "pw", oidHMACSHA256, oidAES128CBC))
	tests := []struct {
		name string
		der  []byte
		want string
	}{
		{"not DER", []byte("nonsense"), "malformed ENCRYPTED PRIVATE KEY"},
		{"PBES1", mustASN1(t, encryptedPrivateKeyInfo{Algorithm: algorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 3}}, EncryptedData: []byte{1}}),
			"unsupported key encryption 1.2.840.113549.1.5.3 (only PBES2 is)"},
		{"truncated data", good.Bytes[:len(good.Bytes)-1], "malformed ENCRYPTED PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decryptPKCS8(tt.der, "pw")
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
	// A wrong password is a bad decrypt, whatever the padding turns out.
	for range 20 {
		der, err := decryptPKCS8(good.Bytes, rand.Text())
		if err == nil {
			if _, err = parseKeyDER("PRIVATE KEY", der); !isKeyParseError(err) {
				t.Fatalf("a wrong password gave a key: %v", err)
			}
		} else if !errors.Is(err, ErrBadDecrypt) {
			t.Fatalf("wrong password: %v", err)
		}
	}
}

func mustASN1(t *testing.T, v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Fuzzed PKCS#8 keys, encrypted or not: whatever the parameters, a key or
// an error comes out, never both and never a panic.
func FuzzParsePrivateKey(f *testing.F) {
	rsa, ecdsa := testCerts(f)
	for _, key := range [][]byte{
		pkcs8Encrypted(f, ecdsa, "pw", nil, oidAES128CBC),
		pkcs8Encrypted(f, rsa, "pw", oidHMACSHA512, oidDESEDE3CBC),
		pkcs8Encrypted(f, ecdsa, "", oidHMACSHA256, oidAES256CBC),
		ecdsa.KeyPEM(),
	} {
		block, _ := pem.Decode(key)
		f.Add(block.Bytes)
	}
	f.Add([]byte("nonsense"))
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, typ := range []string{"ENCRYPTED PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"} {
			key, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), []string{"wrong", "pw", ""})
			if (key == nil) == (err == nil) {
				t.Fatalf("%s: key %T and error %v", typ, key, err)
			}
		}
	})
}
