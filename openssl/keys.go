package openssl

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/pbkdf2"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// This file reads private keys: plain, in OpenSSL's legacy encrypted PEM,
// and in encrypted PKCS#8, which crypto/x509 does not decrypt.

// Errors of ParsePrivateKey for an encrypted key.
var (
	// ErrNoPassword means that the key is encrypted and no password was
	// given.
	ErrNoPassword = errors.New("the key is encrypted and no password is given")
	// ErrBadDecrypt means that no password given decrypts the key
	// (OpenSSL's "bad decrypt").
	ErrBadDecrypt = errors.New("bad decrypt")
)

// ParsePrivateKey returns the first private key of a PEM file, as OpenSSL
// reads the files of openssl genpkey, openssl pkcs8, openssl req -newkey or
// openssl ecparam -genkey: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE
// KEY") or SEC 1 ("EC PRIVATE KEY"), plain or encrypted. Other blocks,
// such as certificates kept in the same file, are skipped. The key is an
// *rsa.PrivateKey, an *ecdsa.PrivateKey or an ed25519.PrivateKey.
//
// An encrypted key is decrypted with each password in turn: a legacy PEM
// key ("Proc-Type: 4,ENCRYPTED", DES-CBC, 3DES-CBC or AES-CBC) or a PKCS#8
// "ENCRYPTED PRIVATE KEY" with PBES2 (PBKDF2 with HMAC-SHA1 or SHA-2, then
// AES-CBC or 3DES-CBC), what OpenSSL 1.1 and 3 write. With no password it
// gives ErrNoPassword; when none decrypts it, ErrBadDecrypt. An empty
// password is a password.
func ParsePrivateKey(pemData []byte, passwords []string) (crypto.Signer, error) {
	block := firstBlock(pemData, func(typ string) bool { return strings.HasSuffix(typ, "PRIVATE KEY") })
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	//lint:ignore SA1019 legacy encrypted PEM keys are what nginx users have; the weakness is theirs to fix, reading them is ours
	legacy := x509.IsEncryptedPEMBlock(block)
	if !legacy && block.Type != "ENCRYPTED PRIVATE KEY" {
		return parseKeyDER(block.Type, block.Bytes)
	}
	if len(passwords) == 0 {
		return nil, ErrNoPassword
	}
	for _, pw := range passwords {
		var der []byte
		var err error
		typ := block.Type
		if legacy {
			//lint:ignore SA1019 see above: legacy encrypted PEM keys must still load
			der, err = x509.DecryptPEMBlock(block, []byte(pw))
		} else {
			der, err = decryptPKCS8(block.Bytes, pw)
			typ = "PRIVATE KEY"
		}
		switch {
		case errors.Is(err, ErrBadDecrypt), errors.Is(err, x509.IncorrectPasswordError):
			continue // the next password, then
		case err != nil:
			return nil, err // malformed or unsupported: no password helps
		}
		key, err := parseKeyDER(typ, der)
		if isKeyParseError(err) {
			continue // a wrong password whose padding happened to look right
		}
		return key, err
	}
	return nil, ErrBadDecrypt
}

// keyParseError is a key that did not parse after decryption: with a
// wrong password, that is what a lucky padding gives.
type keyParseError struct{ err error }

func (e keyParseError) Error() string { return e.err.Error() }

func isKeyParseError(err error) bool {
	var kp keyParseError
	return errors.As(err, &kp)
}

// parseKeyDER parses a decrypted key of the given PEM type.
func parseKeyDER(typ string, der []byte) (crypto.Signer, error) {
	var key any
	var err error
	switch typ {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	default:
		key, err = x509.ParsePKCS8PrivateKey(der)
	}
	if err != nil {
		return nil, keyParseError{err}
	}
	switch k := key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

// OIDs of PKCS#5 v2 (RFC 8018) and of the ciphers it uses.
var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
)

// The ASN.1 of an encrypted PKCS#8 key (RFC 5958, RFC 8018).
type encryptedPrivateKeyInfo struct {
	Algorithm     algorithmIdentifier
	EncryptedData []byte
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type pbes2Params struct {
	KeyDerivationFunc algorithmIdentifier
	EncryptionScheme  algorithmIdentifier
}

type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	KeyLength      int                 `asn1:"optional"`
	PRF            algorithmIdentifier `asn1:"optional"`
}

// maxPBKDF2Iterations bounds the work one key asks for.
const maxPBKDF2Iterations = 1 << 24

// decryptPKCS8 decrypts an ENCRYPTED PRIVATE KEY (PBES2 with PBKDF2 and
// AES-CBC or 3DES-CBC) and returns the PKCS#8 DER. A wrong password gives
// ErrBadDecrypt.
func decryptPKCS8(der []byte, password string) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) > 0 {
		return nil, errors.New("malformed ENCRYPTED PRIVATE KEY")
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("unsupported key encryption %v (only PBES2 is)", info.Algorithm.Algorithm)
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil {
		return nil, errors.New("malformed PBES2 parameters")
	}
	if !params.KeyDerivationFunc.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("unsupported key derivation %v (only PBKDF2 is)", params.KeyDerivationFunc.Algorithm)
	}
	var kdf pbkdf2Params
	if _, err := asn1.Unmarshal(params.KeyDerivationFunc.Parameters.FullBytes, &kdf); err != nil {
		return nil, errors.New("malformed PBKDF2 parameters")
	}
	if kdf.IterationCount < 1 || kdf.IterationCount > maxPBKDF2Iterations {
		return nil, fmt.Errorf("unsupported PBKDF2 iteration count %d", kdf.IterationCount)
	}
	prf, err := pbkdf2PRF(kdf.PRF.Algorithm)
	if err != nil {
		return nil, err
	}
	newCipher, keyLen, err := pbes2Cipher(params.EncryptionScheme.Algorithm)
	if err != nil {
		return nil, err
	}
	if kdf.KeyLength != 0 && kdf.KeyLength != keyLen {
		return nil, fmt.Errorf("PBKDF2 key length %d does not fit the cipher", kdf.KeyLength)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(params.EncryptionScheme.Parameters.FullBytes, &iv); err != nil {
		return nil, errors.New("malformed cipher parameters")
	}
	key, err := pbkdf2.Key(prf, password, kdf.Salt, kdf.IterationCount, keyLen)
	if err != nil {
		return nil, err
	}
	block, err := newCipher(key)
	if err != nil {
		return nil, err
	}
	data := info.EncryptedData
	if len(iv) != block.BlockSize() || len(data) == 0 || len(data)%block.BlockSize() != 0 {
		return nil, errors.New("malformed encrypted key")
	}
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, data)
	return unpad(out, block.BlockSize())
}

func pbkdf2PRF(oid asn1.ObjectIdentifier) (func() hash.Hash, error) {
	switch {
	case len(oid) == 0, oid.Equal(oidHMACSHA1):
		return sha1.New, nil
	case oid.Equal(oidHMACSHA224):
		return sha256.New224, nil
	case oid.Equal(oidHMACSHA256):
		return sha256.New, nil
	case oid.Equal(oidHMACSHA384):
		return sha512.New384, nil
	case oid.Equal(oidHMACSHA512):
		return sha512.New, nil
	}
	return nil, fmt.Errorf("unsupported PBKDF2 function %v", oid)
}

func pbes2Cipher(oid asn1.ObjectIdentifier) (func([]byte) (cipher.Block, error), int, error) {
	switch {
	case oid.Equal(oidAES128CBC):
		return aes.NewCipher, 16, nil
	case oid.Equal(oidAES192CBC):
		return aes.NewCipher, 24, nil
	case oid.Equal(oidAES256CBC):
		return aes.NewCipher, 32, nil
	case oid.Equal(oidDESEDE3CBC):
		return des.NewTripleDESCipher, 24, nil
	}
	return nil, 0, fmt.Errorf("unsupported key cipher %v", oid)
}

// unpad removes PKCS#7 padding; bad padding means a wrong password.
func unpad(b []byte, size int) ([]byte, error) {
	n := int(b[len(b)-1])
	if n == 0 || n > size || n > len(b) {
		return nil, ErrBadDecrypt
	}
	if !bytes.Equal(b[len(b)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, ErrBadDecrypt
	}
	return b[:len(b)-n], nil
}
