package config

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/mailproxy/mailproxy/openssl"
)

// This file reads the files of the ssl_* directives: certificates with
// their chains, private keys (encrypted ones with ssl_password_file), CA
// certificates, CRLs and DH parameters, relative to the prefix, and words
// the errors as nginx does. Package openssl parses them. Everything is
// read when the configuration is loaded, so that a reload picks up new
// files and a bad one fails the reload, as nginx does.

// maxPEMFile bounds a certificate, key, CA or CRL file.
const maxPEMFile = 16 << 20

// readSSLFile reads the file a directive names, relative to the prefix.
// With data set, a value "data:…" is the content itself, as nginx allows
// for ssl_certificate and ssl_certificate_key.
func readSSLFile(opts Options, v string, data bool) ([]byte, error) {
	if data && strings.HasPrefix(v, "data:") {
		return []byte(v[len("data:"):]), nil
	}
	return readLimited(opts.files(), opts.path(v), v, maxPEMFile)
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

// loadSSLFile reads the file (or, with data, the "data:" value) of a
// directive and parses it, naming what it holds in the error.
func loadSSLFile[T any](opts Options, v string, data bool, what string, parse func([]byte) (T, error)) (T, error) {
	b, err := readSSLFile(opts, v, data)
	if err == nil {
		var t T
		if t, err = parse(b); err == nil {
			return t, nil
		}
	}
	label := v
	if data {
		label = fileLabel(v)
	}
	var zero T
	return zero, fmt.Errorf("cannot load %s %q: %w", what, label, err)
}

// loadCertChain reads a certificate file: the server's certificate, then
// the intermediates of its chain.
func loadCertChain(opts Options, v string) ([]*x509.Certificate, error) {
	return loadSSLFile(opts, v, true, "certificate", openssl.ParseCertificates)
}

// loadPrivateKey reads a key file, decrypting the key with the passwords
// of pwFile when it is encrypted.
func loadPrivateKey(opts Options, v string, passwords []string, pwFile string) (crypto.Signer, error) {
	return loadSSLFile(opts, v, true, "certificate key", func(b []byte) (crypto.Signer, error) {
		key, err := openssl.ParsePrivateKey(b, passwords)
		switch {
		case errors.Is(err, openssl.ErrNoPassword):
			return nil, errors.New(`the key is encrypted and no "ssl_password_file" is set`)
		case errors.Is(err, openssl.ErrBadDecrypt):
			return nil, fmt.Errorf("%w: no password in %q decrypts it", err, pwFile)
		}
		return key, err
	})
}

// keyPair makes a tls.Certificate of a chain and its key, which must be
// the key of the first certificate.
func keyPair(certs []*x509.Certificate, key crypto.Signer, certV, keyV string) (tls.Certificate, error) {
	pair, err := openssl.KeyPair(certs, key)
	if errors.Is(err, openssl.ErrKeyMismatch) {
		return pair, fmt.Errorf("certificate key %q does not match certificate %q (%w)", fileLabel(keyV), fileLabel(certV), err)
	}
	return pair, err
}

// loadCAs reads the certificates of ssl_client_certificate or
// ssl_trusted_certificate.
func loadCAs(opts Options, v string) ([]*x509.Certificate, error) {
	return loadSSLFile(opts, v, false, "CA certificates", openssl.ParseCertificates)
}

// loadCRLs reads the CRLs of an ssl_crl file.
func loadCRLs(opts Options, v string) ([]*x509.RevocationList, error) {
	return loadSSLFile(opts, v, false, "CRL", openssl.ParseCRLs)
}

// checkDHParam checks that an ssl_dhparam file holds DH parameters. They
// are not used: crypto/tls has no finite-field DHE.
func checkDHParam(opts Options, v string) error {
	_, err := loadSSLFile(opts, v, false, "DH parameters", func(b []byte) (struct{}, error) {
		return struct{}{}, openssl.CheckDHParams(b)
	})
	return err
}
