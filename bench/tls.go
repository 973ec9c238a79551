package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// setupTLS makes a self-signed ECDSA certificate for both proxies and
// the direct TLS backends.
func (h *harness) setupTLS() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bench.local"},
		DNSNames:     []string{"bench.local"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	h.conf.Cert, h.conf.Key = filepath.Join(h.dir, "cert.pem"), filepath.Join(h.dir, "key.pem")
	if err := os.WriteFile(h.conf.Cert, certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(h.conf.Key, keyPEM, 0o600); err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	// The key exchange the proxies are configured with (confTemplate).
	srv := &tls.Config{Certificates: []tls.Certificate{pair}, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
	h.tlsBackends = map[string]*backend{}
	for _, proto := range []string{"imap", "pop3", "smtp"} {
		b, err := startBackend(proto, 1, h.backends[proto].msg, srv)
		if err != nil {
			return err
		}
		h.tlsBackends[proto] = b
	}
	return nil
}

// clientTLS is the generator's TLS configuration; a session cache makes
// it resume.
func clientTLS(cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "bench.local", ClientSessionCache: cache}
}
