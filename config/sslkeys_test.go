package config

import (
	"bytes"
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

// writeEncryptedLegacyKey writes c's key as an OpenSSL legacy encrypted
// PEM (Proc-Type: 4,ENCRYPTED), AES-256-CBC.
func writeEncryptedLegacyKey(t *testing.T, path string, c *testutil.Cert, password string) {
	t.Helper()
	if err := os.WriteFile(path, legacyEncrypted(t, c, password, x509.PEMCipherAES256), 0o600); err != nil {
		t.Fatal(err)
	}
}

func legacyEncrypted(t *testing.T, c *testutil.Cert, password string, alg x509.PEMCipher) []byte {
	t.Helper()
	var typ string
	var der []byte
	var err error
	switch k := c.Key.(type) {
	case *rsa.PrivateKey:
		typ, der = "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)
	case *ecdsa.PrivateKey:
		typ = "EC PRIVATE KEY"
		if der, err = x509.MarshalECPrivateKey(k); err != nil {
			t.Fatal(err)
		}
	}
	//lint:ignore SA1019 the tests make the legacy keys that users still have
	block, err := x509.EncryptPEMBlock(rand.Reader, typ, der, []byte(password), alg)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// pkcs8Encrypted encrypts c's key as a PKCS#8 ENCRYPTED PRIVATE KEY with
// PBES2: PBKDF2 with the HMAC prf (nil for the default, SHA-1), then enc.
func pkcs8Encrypted(t *testing.T, c *testutil.Cert, password string, prf asn1.ObjectIdentifier, enc asn1.ObjectIdentifier) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	newHash, err := pbkdf2PRF(prf)
	if err != nil {
		t.Fatal(err)
	}
	newCipher, keyLen, err := pbes2Cipher(enc)
	if err != nil {
		t.Fatal(err)
	}
	salt, iterations := randomBytes(t, 16), 2048
	key, err := pbkdf2.Key(newHash, password, salt, iterations, keyLen)
	if err != nil {
		t.Fatal(err)
	}
	block, err := newCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	iv := randomBytes(t, block.BlockSize())
	n := block.BlockSize() - len(der)%block.BlockSize()
	plain := append(der, bytes.Repeat([]byte{byte(n)}, n)...)
	encrypted := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(encrypted, plain)

	mustMarshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	kdf := pbkdf2Params{Salt: salt, IterationCount: iterations}
	if prf != nil {
		kdf.PRF = algorithmIdentifier{Algorithm: prf, Parameters: asn1.NullRawValue}
	}
	params := pbes2Params{
		KeyDerivationFunc: algorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: mustMarshal(kdf)}},
		EncryptionScheme:  algorithmIdentifier{Algorithm: enc, Parameters: asn1.RawValue{FullBytes: mustMarshal(iv)}},
	}
	info := encryptedPrivateKeyInfo{
		Algorithm:     algorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: mustMarshal(params)}},
		EncryptedData: encrypted,
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: mustMarshal(info)})
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
	p := certs(t)
	const pw = "correct horse"
	tests := []struct {
		name string
		cert *testutil.Cert
		key  func(t *testing.T) []byte
	}{
		{"legacy PEM, RSA, AES-256", p.rsa, func(t *testing.T) []byte { return legacyEncrypted(t, p.rsa, pw, x509.PEMCipherAES256) }},
		{"legacy PEM, EC, 3DES", p.ecdsa, func(t *testing.T) []byte { return legacyEncrypted(t, p.ecdsa, pw, x509.PEMCipher3DES) }},
		{"PKCS#8, SHA-1, AES-128", p.ecdsa, func(t *testing.T) []byte { return pkcs8Encrypted(t, p.ecdsa, pw, nil, oidAES128CBC) }},
		{"PKCS#8, SHA-256, AES-192", p.rsa, func(t *testing.T) []byte { return pkcs8Encrypted(t, p.rsa, pw, oidHMACSHA256, oidAES192CBC) }},
		{"PKCS#8, SHA-256, AES-256", p.ecdsa, func(t *testing.T) []byte { return pkcs8Encrypted(t, p.ecdsa, pw, oidHMACSHA256, oidAES256CBC) }},
		{"PKCS#8, SHA-512, 3DES", p.ecdsa, func(t *testing.T) []byte { return pkcs8Encrypted(t, p.ecdsa, pw, oidHMACSHA512, oidDESEDE3CBC) }},
		{"openssl pkcs8 -v2 aes256", p.rsa, func(t *testing.T) []byte { return opensslPKCS8(t, p.rsa, pw, "-v2", "aes256") }},
		{"openssl pkcs8 -v2 aes128 -v2prf hmacWithSHA1", p.ecdsa, func(t *testing.T) []byte {
			return opensslPKCS8(t, p.ecdsa, pw, "-v2", "aes128", "-v2prf", "hmacWithSHA1")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyPEM := tt.key(t)
			key, err := parsePrivateKey(keyPEM, []string{"wrong", "", pw}, "pw")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.cert.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("another key came out")
			}
			_, err = parsePrivateKey(keyPEM, []string{"wrong", "Correct horse"}, "pw")
			if !errors.Is(err, errBadDecrypt) || err.Error() != `bad decrypt: no password in "pw" decrypts it` {
				t.Errorf("wrong passwords: %v", err)
			}
			_, err = parsePrivateKey(keyPEM, nil, "")
			if err == nil || err.Error() != `the key is encrypted and no "ssl_password_file" is set` {
				t.Errorf("no password file: %v", err)
			}
		})
	}
}

// ssl_password_file passphrases are tried in order for each key; a list
// with none that fits fails the Load, naming the key file.
func TestPasswordFile(t *testing.T) {
	dir := tlsDir(t)
	p := certs(t)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rsa.key", legacyEncrypted(t, p.rsa, "second", x509.PEMCipherAES128))
	write("ecdsa.key", pkcs8Encrypted(t, p.ecdsa, "first", oidHMACSHA256, oidAES256CBC))
	write("passwords", []byte("first\r\nsecond"))
	write("bad-passwords", []byte("first\nthird\n"))
	body := "ssl_certificate rsa.crt; ssl_certificate_key rsa.key; ssl_certificate ecdsa.crt; ssl_certificate_key ecdsa.key;\n" +
		"ssl_password_file passwords;\nserver { listen 993 ssl; }\nserver { listen 995 ssl;\nssl_password_file bad-passwords; }"
	_, _, err := loadTLS(t, dir, body)
	if want := `test.conf:3: cannot load certificate key "rsa.key": bad decrypt: no password in "bad-passwords" decrypts it`; err == nil || err.Error() != want {
		t.Errorf("error\n got %v\nwant %s", err, want)
	}
	ts := mustTLS(t, dir, strings.TrimSuffix(body, "\nserver { listen 995 ssl;\nssl_password_file bad-passwords; }"))
	if got := leafNames(ts[0].Config); len(got) != 2 {
		t.Errorf("certificates %v", got)
	}
	if got, err := readPasswords(Options{Prefix: dir}, "passwords"); err != nil || strings.Join(got, "|") != "first|second" {
		t.Errorf("passwords %q %v", got, err)
	}
	write("empty", nil)
	if got, err := readPasswords(Options{Prefix: dir}, "empty"); err != nil || len(got) != 1 || got[0] != "" {
		t.Errorf("an empty file gives %q %v, want one empty password", got, err)
	}
}

func TestPKCS8Errors(t *testing.T) {
	p := certs(t)
	good, _ := pem.Decode(pkcs8Encrypted(t, p.ecdsa, "pw", oidHMACSHA256, oidAES128CBC))
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
		der, err := decryptPKCS8(good.Bytes, string(randomBytes(t, 8)))
		if err == nil {
			if _, err = parseKeyDER("PRIVATE KEY", der); !isKeyParseError(err) {
				t.Fatalf("a wrong password gave a key: %v", err)
			}
		} else if !errors.Is(err, errBadDecrypt) {
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
