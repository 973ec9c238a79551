package openssl_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailproxy/mailproxy/openssl"
)

// A tls.Config from nginx's ssl_ciphers and ssl_ecdh_curve.
func ExampleParseCipherString() {
	l, err := openssl.ParseCipherString("ECDHE+AESGCM:ECDHE+CHACHA20:CAMELLIA:!aRSA")
	if err != nil {
		log.Fatal(err)
	}
	curves, _, err := openssl.ParseGroups("X25519:prime256v1")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{CipherSuites: l.CipherSuites, CurvePreferences: curves}
	for _, id := range cfg.CipherSuites {
		fmt.Println(openssl.CipherName(id))
	}
	fmt.Println("left out:", l.Unsupported)
	// Output:
	// ECDHE-ECDSA-AES256-GCM-SHA384
	// ECDHE-ECDSA-AES128-GCM-SHA256
	// ECDHE-ECDSA-CHACHA20-POLY1305
	// left out: [CAMELLIA]
}

// The curves of an OpenSSL group list that crypto/tls has, and the others.
func ExampleParseGroups() {
	curves, unsupported, err := openssl.ParseGroups("X25519MLKEM768:X25519:X448:secp384r1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(curves, unsupported)
	// Output: [X25519MLKEM768 X25519 CurveP384] [X448]
}

// A tls.Config from OpenSSL's configuration commands, as nginx's
// ssl_conf_command gives them, saying what crypto/tls does not do.
func ExampleParseConfCommand() {
	cfg := &tls.Config{}
	for _, cmd := range [][2]string{
		{"MinProtocol", "TLSv1.2"},
		{"CipherString", "ECDHE+AESGCM"},
		{"Groups", "X25519:X448:P-256"},
		{"Options", "-SessionTicket,-ServerPreference"},
		{"SignatureAlgorithms", "ECDSA+SHA256"},
	} {
		c, err := openssl.ParseConfCommand(cmd[0], cmd[1])
		if err != nil {
			log.Fatalf("SSL_CONF_cmd(%q, %q) failed: %v", cmd[0], cmd[1], err)
		}
		switch c.Name {
		case "MinProtocol":
			cfg.MinVersion = c.Version
		case "CipherString":
			cfg.CipherSuites = c.Ciphers.CipherSuites
		case "Groups":
			cfg.CurvePreferences = c.Curves
			fmt.Println("curves left out:", c.UnsupportedCurves)
		case "Options":
			if c.SessionTickets != nil {
				cfg.SessionTicketsDisabled = !*c.SessionTickets
			}
		}
		if len(c.Ignored) > 0 {
			fmt.Println("not honoured:", c.Ignored)
		}
	}
	fmt.Println(openssl.ProtocolName(cfg.MinVersion), len(cfg.CipherSuites), cfg.CurvePreferences, cfg.SessionTicketsDisabled)

	_, err := openssl.ParseConfCommand("Options", "-Frobnicate")
	fmt.Println(err, errors.Is(err, openssl.ErrBadValue))
	// Output:
	// curves left out: [X448]
	// not honoured: [-ServerPreference]
	// not honoured: [SignatureAlgorithms]
	// TLSv1.2 4 [X25519 CurveP256] true
	// bad value true
}

// The versions of nginx's ssl_protocols, for tls.Config's MinVersion and
// MaxVersion: the SSL versions come before every TLS version.
func ExampleProtocolVersion() {
	for _, name := range []string{"SSLv3", "TLSv1", "TLSv1.3", "TLSv1.0"} {
		v, ok := openssl.ProtocolVersion(name)
		fmt.Printf("%s %#04x known=%v crypto/tls=%v\n", name, v, ok, ok && v >= tls.VersionTLS10)
	}
	// Output:
	// SSLv3 0x0300 known=true crypto/tls=false
	// TLSv1 0x0301 known=true crypto/tls=true
	// TLSv1.3 0x0304 known=true crypto/tls=true
	// TLSv1.0 0x0000 known=false crypto/tls=false
}

// A server certificate from the files of nginx's ssl_certificate,
// ssl_certificate_key and ssl_password_file, the key being encrypted.
func ExampleKeyPair() {
	dir := exampleFiles()
	defer os.RemoveAll(dir)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			log.Fatal(err)
		}
		return b
	}
	chain, err := openssl.ParseCertificates(read("mail.crt"))
	if err != nil {
		log.Fatal(err)
	}
	passwords := strings.Split(strings.TrimSuffix(string(read("mail.pass")), "\n"), "\n")
	key, err := openssl.ParsePrivateKey(read("mail.key"), passwords)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := openssl.KeyPair(chain, key)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	fmt.Println(cfg.Certificates[0].Leaf.Subject.CommonName)
	// Output: mail.example.org
}

// exampleFiles writes, in a new folder, mail.crt (a self-signed
// certificate), mail.key (its key, encrypted as openssl ec -aes256
// writes it) and mail.pass (an old password, then the key's).
func exampleFiles() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.org"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		log.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	//lint:ignore SA1019 the legacy encrypted PEM of openssl ec -aes256
	keyBlock, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", keyDER, []byte("new"), x509.PEMCipherAES256)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "openssl-example")
	if err != nil {
		log.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"mail.crt":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"mail.key":  pem.EncodeToMemory(keyBlock),
		"mail.pass": []byte("old\nnew\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			log.Fatal(err)
		}
	}
	return dir
}
