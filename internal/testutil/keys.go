package testutil

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"hash"
	"testing"
)

// This file writes a test key encrypted, as OpenSSL's tools write keys
// that nginx users keep: for tests of the code that decrypts them. The
// encoder is written here on its own, so that it does not share a
// mistake with the decoder it tests.

// LegacyEncryptedKeyPEM returns the key in OpenSSL's legacy encrypted PEM
// (Proc-Type: 4,ENCRYPTED): PKCS#1 for RSA, SEC 1 for ECDSA.
func (c *Cert) LegacyEncryptedKeyPEM(t testing.TB, password string, alg x509.PEMCipher) []byte {
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
	default:
		t.Fatalf("no legacy PEM for a %T", c.Key)
	}
	//lint:ignore SA1019 the tests make the legacy keys that users still have
	block, err := x509.EncryptPEMBlock(rand.Reader, typ, der, []byte(password), alg)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// PBES2 is a password-based encryption scheme of PKCS#5 v2 (RFC 8018):
// PBKDF2 with an HMAC, then a block cipher in CBC mode.
type PBES2 struct {
	PRF       asn1.ObjectIdentifier // the HMAC; nil leaves it out, which means HMAC-SHA1
	Hash      func() hash.Hash      // the hash of PRF
	Cipher    asn1.ObjectIdentifier // the cipher, in CBC mode
	NewCipher func(key []byte) (cipher.Block, error)
	KeyLen    int // bytes
}

// PBES2AES256 is what openssl pkcs8 -topk8 writes by default: PBKDF2 with
// HMAC-SHA256, then AES-256-CBC.
var PBES2AES256 = PBES2{
	PRF:       asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9},
	Hash:      sha256.New,
	Cipher:    asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42},
	NewCipher: aes.NewCipher,
	KeyLen:    32,
}

// EncryptedKeyPEM returns the key as a PKCS#8 ENCRYPTED PRIVATE KEY
// (RFC 5958) encrypted with password by scheme s.
func (c *Cert) EncryptedKeyPEM(t testing.TB, password string, s PBES2) []byte {
	t.Helper()
	plain, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	salt, iterations := rand.Text(), 2048
	key, err := pbkdf2.Key(s.Hash, password, []byte(salt), iterations, s.KeyLen)
	if err != nil {
		t.Fatal(err)
	}
	block, err := s.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, block.BlockSize())
	rand.Read(iv)
	pad := block.BlockSize() - len(plain)%block.BlockSize()
	plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...)
	sealed := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(sealed, plain)

	// AlgorithmIdentifier values, each an OID and its DER parameters.
	type algorithm struct {
		OID    asn1.ObjectIdentifier
		Params asn1.RawValue
	}
	der := func(v any) asn1.RawValue {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	var kdfParams any = struct {
		Salt       []byte
		Iterations int
	}{[]byte(salt), iterations}
	if s.PRF != nil {
		kdfParams = struct {
			Salt       []byte
			Iterations int
			PRF        algorithm
		}{[]byte(salt), iterations, algorithm{s.PRF, asn1.NullRawValue}}
	}
	var (
		oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
		oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	)
	info := struct {
		Scheme algorithm
		Data   []byte
	}{
		algorithm{oidPBES2, der(struct{ KDF, Cipher algorithm }{
			algorithm{oidPBKDF2, der(kdfParams)},
			algorithm{s.Cipher, der(iv)},
		})},
		sealed,
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der(info).FullBytes})
}
