package config

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
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
)

// This file reads the files of the ssl_* directives: certificates with
// their chains, private keys (encrypted ones with ssl_password_file), CA
// certificates, CRLs and DH parameters. Everything is read when the
// configuration is loaded, so that a reload picks up new files and a bad
// one fails the reload, as nginx does.

// maxPEMFile bounds a certificate, key, CA or CRL file.
const maxPEMFile = 16 << 20

// readSSLFile reads the file a directive names, relative to the prefix.
// With data set, a value "data:…" is the content itself, as nginx allows
// for ssl_certificate and ssl_certificate_key.
func readSSLFile(opts Options, v string, data bool) ([]byte, error) {
	if data && strings.HasPrefix(v, "data:") {
		return []byte(v[len("data:"):]), nil
	}
	f, err := os.Open(opts.path(v))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("read %s: file larger than %d bytes", v, maxPEMFile)
	}
	return b, nil
}

// fileLabel names a value in messages: a path as given, or "data:…".
func fileLabel(v string) string {
	if strings.HasPrefix(v, "data:") {
		return "data:…"
	}
	return v
}

// readPasswords reads an ssl_password_file: one passphrase a line, an
// empty line being an empty passphrase, as nginx reads it.
func readPasswords(opts Options, v string) ([]string, error) {
	b, err := readSSLFile(opts, v, false)
	if err != nil {
		return nil, err
	}
	var pws []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		pws = append(pws, strings.TrimSuffix(line, "\r"))
	}
	return pws, nil // an empty file is one empty passphrase
}

// loadCertChain reads a certificate file: the server's certificate, then
// the intermediates of its chain.
func loadCertChain(opts Options, v string) ([]*x509.Certificate, error) {
	return readCertificates(opts, v, true, "certificate")
}

// readCertificates reads the certificates of a file (or, with data, of a
// "data:" value), naming what they are in the error.
func readCertificates(opts Options, v string, data bool, what string) ([]*x509.Certificate, error) {
	b, err := readSSLFile(opts, v, data)
	if err == nil {
		var certs []*x509.Certificate
		if certs, err = parseCertificates(b); err == nil {
			return certs, nil
		}
	}
	label := v
	if data {
		label = fileLabel(v)
	}
	return nil, fmt.Errorf("cannot load %s %q: %w", what, label, err)
}

// loadPrivateKey reads a key file, decrypting the key with the passwords
// of pwFile when it is encrypted.
func loadPrivateKey(opts Options, v string, passwords []string, pwFile string) (crypto.Signer, error) {
	b, err := readSSLFile(opts, v, true)
	if err == nil {
		var key crypto.Signer
		if key, err = parsePrivateKey(b, passwords, pwFile); err == nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("cannot load certificate key %q: %w", fileLabel(v), err)
}

// keyPair makes a tls.Certificate of a chain and its key, which must be
// the key of the first certificate.
func keyPair(certs []*x509.Certificate, key crypto.Signer, certV, keyV string) (tls.Certificate, error) {
	pub, ok := certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, fmt.Errorf("certificate key %q does not match certificate %q (key values mismatch)", fileLabel(keyV), fileLabel(certV))
	}
	pair := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	return pair, nil
}

// parseCertificates returns every CERTIFICATE block of a PEM file, in
// order. Other blocks (a private key kept in the same file) are skipped.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" && block.Type != "TRUSTED CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// errBadDecrypt means that no password decrypted a key.
var errBadDecrypt = errors.New("bad decrypt")

// parsePrivateKey returns the first private key of a PEM file: PKCS#8,
// PKCS#1 (RSA) or SEC 1 (EC), plain, encrypted in the legacy PEM way
// (Proc-Type: 4,ENCRYPTED) or in PKCS#8 with PBES2. Each password is tried
// in turn.
func parsePrivateKey(b []byte, passwords []string, pwFile string) (crypto.Signer, error) {
	var block *pem.Block
	for {
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			break
		}
	}
	//lint:ignore SA1019 legacy encrypted PEM keys are what nginx users have; the weakness is theirs to fix, reading them is ours
	legacy := x509.IsEncryptedPEMBlock(block)
	if !legacy && block.Type != "ENCRYPTED PRIVATE KEY" {
		return parseKeyDER(block.Type, block.Bytes)
	}
	if passwords == nil {
		return nil, errors.New("the key is encrypted and no \"ssl_password_file\" is set")
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
		case errors.Is(err, errBadDecrypt), errors.Is(err, x509.IncorrectPasswordError):
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
	return nil, fmt.Errorf("%w: no password in %q decrypts it", errBadDecrypt, pwFile)
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
// errBadDecrypt.
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
		return nil, errBadDecrypt
	}
	if !bytes.Equal(b[len(b)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, errBadDecrypt
	}
	return b[:len(b)-n], nil
}

// loadCAs reads the certificates of ssl_client_certificate or
// ssl_trusted_certificate.
func loadCAs(opts Options, v string) ([]*x509.Certificate, error) {
	return readCertificates(opts, v, false, "CA certificates")
}

// loadCRLs reads the X509 CRL blocks of an ssl_crl file.
func loadCRLs(opts Options, v string) ([]*x509.RevocationList, error) {
	b, err := readSSLFile(opts, v, false)
	if err != nil {
		return nil, fmt.Errorf("cannot load CRL %q: %w", v, err)
	}
	var crls []*x509.RevocationList
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cannot load CRL %q: CRL %d: %w", v, len(crls)+1, err)
		}
		crls = append(crls, crl)
	}
	if len(crls) == 0 {
		return nil, fmt.Errorf("cannot load CRL %q: no PEM X509 CRL found", v)
	}
	return crls, nil
}

// checkDHParam checks that an ssl_dhparam file holds DH parameters. They
// are not used: crypto/tls has no finite-field DHE.
func checkDHParam(opts Options, v string) error {
	b, err := readSSLFile(opts, v, false)
	if err != nil {
		return fmt.Errorf("cannot load DH parameters %q: %w", v, err)
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return fmt.Errorf("cannot load DH parameters %q: no PEM DH PARAMETERS found", v)
		}
		if block.Type == "DH PARAMETERS" || block.Type == "X9.42 DH PARAMETERS" {
			var seq asn1.RawValue
			if _, err := asn1.Unmarshal(block.Bytes, &seq); err != nil {
				return fmt.Errorf("cannot load DH parameters %q: %w", v, err)
			}
			return nil
		}
	}
}
