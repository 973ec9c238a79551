package openssl

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// This file reads the PEM files of certificates, CRLs and DH parameters,
// and pairs a certificate chain with its key.

// ParseCertificates returns every certificate of a PEM file, in order:
// the CERTIFICATE blocks, and the TRUSTED CERTIFICATE blocks that
// openssl x509 -trustout writes (their trust settings are not read).
// Other blocks, such as a private key kept in the same file, are skipped.
// A file of a server's certificate holds it first, then the intermediates
// of its chain; a CA file holds the CAs.
func ParseCertificates(pemData []byte) ([]*x509.Certificate, error) {
	certs, err := parseBlocks(pemData, "certificate", x509.ParseCertificate, "CERTIFICATE", "TRUSTED CERTIFICATE")
	if err == nil && len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, err
}

// ParseCRLs returns every certificate revocation list (X509 CRL block)
// of a PEM file, in order. Other blocks are skipped.
func ParseCRLs(pemData []byte) ([]*x509.RevocationList, error) {
	crls, err := parseBlocks(pemData, "CRL", x509.ParseRevocationList, "X509 CRL")
	if err == nil && len(crls) == 0 {
		return nil, errors.New("no PEM X509 CRL found")
	}
	return crls, err
}

// parseBlocks parses, in order, the blocks of a PEM file whose type is
// one of types. An error names the block: "certificate 2: …".
func parseBlocks[T any](data []byte, what string, parse func(der []byte) (T, error), types ...string) ([]T, error) {
	var out []T
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		if !slices.Contains(types, block.Type) {
			continue
		}
		v, err := parse(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s %d: %w", what, len(out)+1, err)
		}
		out = append(out, v)
	}
}

// firstBlock returns the first block of a PEM file whose type match
// accepts, or nil.
func firstBlock(data []byte, match func(typ string) bool) *pem.Block {
	for {
		block, rest := pem.Decode(data)
		if block == nil || match(block.Type) {
			return block
		}
		data = rest
	}
}

// CheckDHParams checks that a PEM file holds DH parameters, as openssl
// dhparam writes them (a DH PARAMETERS or X9.42 DH PARAMETERS block of
// DER). Only the shape is checked: crypto/tls has no finite-field DHE, so
// the parameters have no use.
func CheckDHParams(pemData []byte) error {
	block := firstBlock(pemData, func(typ string) bool { return typ == "DH PARAMETERS" || typ == "X9.42 DH PARAMETERS" })
	if block == nil {
		return errors.New("no PEM DH PARAMETERS found")
	}
	var seq asn1.RawValue
	_, err := asn1.Unmarshal(block.Bytes, &seq)
	return err
}

// ErrKeyMismatch means that a private key is not the key of the
// certificate it goes with (OpenSSL's "key values mismatch").
var ErrKeyMismatch = errors.New("key values mismatch")

// KeyPair returns the tls.Certificate of a certificate chain, as
// ParseCertificates reads it, and the private key of its first
// certificate, as ParsePrivateKey reads it. It is tls.X509KeyPair for
// what OpenSSL reads and crypto/tls does not: encrypted keys, TRUSTED
// CERTIFICATE blocks. A key of another certificate gives ErrKeyMismatch.
func KeyPair(chain []*x509.Certificate, key crypto.Signer) (tls.Certificate, error) {
	if len(chain) == 0 {
		return tls.Certificate{}, errors.New("no certificate")
	}
	pub, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, ErrKeyMismatch
	}
	pair := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	return pair, nil
}
