package config

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailproxy/mailproxy"
	"github.com/mailproxy/mailproxy/auth"
	"github.com/mailproxy/mailproxy/internal/testutil"
	"github.com/mailproxy/mailproxy/openssl"
	"github.com/mailproxy/mailproxy/session"
)

// testPKI are the certificates of the TLS tests, made once per run: no
// key is ever committed.
type testPKI struct {
	ca, inter          *testutil.Cert // root CA, intermediate CA
	rsa, ecdsa, leaf   *testutil.Cert // server certificates: by ca, by ca, by inter
	clientCA, trustCA  *testutil.Cert
	client, revoked    *testutil.Cert // issued by clientCA
	otherRSA, otherECD *testutil.Cert // a second pair, for mismatches
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

func certs(t *testing.T) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		ca := testutil.NewCA(t, "mailproxy test CA")
		inter := ca.Issue(t, testutil.CertOptions{CA: true, Key: testutil.ECDSA})
		clientCA := testutil.NewCA(t, "mailproxy client CA")
		pki = &testPKI{
			ca: ca, inter: inter,
			rsa:      ca.Issue(t, testutil.CertOptions{Key: testutil.RSA}),
			ecdsa:    ca.Issue(t, testutil.CertOptions{Key: testutil.ECDSA}),
			leaf:     inter.Issue(t, testutil.CertOptions{}),
			clientCA: clientCA, trustCA: testutil.NewCA(t, "mailproxy trusted CA"),
			client:   clientCA.Issue(t, testutil.CertOptions{Client: true}),
			revoked:  clientCA.Issue(t, testutil.CertOptions{Client: true}),
			otherRSA: ca.Issue(t, testutil.CertOptions{Key: testutil.RSA}),
			otherECD: ca.Issue(t, testutil.CertOptions{}),
		}
	})
	if pki == nil {
		t.Fatal("test certificates could not be made")
	}
	return pki
}

// tlsDir writes the test PKI into a new folder: rsa.crt/key, ecdsa.crt/key,
// chain.crt/key (with its intermediate), other.crt/key (ECDSA),
// other-rsa.crt/key, combined.pem (a certificate and its key), ca.crt,
// client-ca.crt,
// trusted-ca.crt, client-ca.crl (revoking one client), dh.pem and
// ticket keys tk48 and tk80.
func tlsDir(t *testing.T) string {
	t.Helper()
	p := certs(t)
	dir := t.TempDir()
	p.rsa.WriteFiles(t, dir, "rsa")
	p.ecdsa.WriteFiles(t, dir, "ecdsa")
	p.leaf.WriteFiles(t, dir, "chain", p.inter)
	p.otherECD.WriteFiles(t, dir, "other")
	p.otherRSA.WriteFiles(t, dir, "other-rsa")
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("combined.pem", append(p.ecdsa.CertPEM(), p.ecdsa.KeyPEM()...))
	write("ca.crt", p.ca.CertPEM())
	write("client-ca.crt", p.clientCA.CertPEM())
	write("trusted-ca.crt", p.trustCA.CertPEM())
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: p.revoked.Cert.SerialNumber, RevocationTime: time.Now()}},
	}, p.clientCA.Cert, p.clientCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	write("client-ca.crl", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}))
	dh, err := asn1.Marshal(struct{ P, G *big.Int }{big.NewInt(23), big.NewInt(5)}) // the shape, not real parameters
	if err != nil {
		t.Fatal(err)
	}
	write("dh.pem", pem.EncodeToMemory(&pem.Block{Type: "DH PARAMETERS", Bytes: dh}))
	write("tk48", randomBytes(t, 48))
	write("tk80", randomBytes(t, 80))
	write("tk80b", randomBytes(t, 80))
	return dir
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// inlineCertificate returns ssl_certificate and ssl_certificate_key
// directives with "data:" values.
func inlineCertificate(t *testing.T) string {
	p := certs(t)
	return fmt.Sprintf("ssl_certificate %q; ssl_certificate_key %q;", "data:"+string(p.ecdsa.CertPEM()), "data:"+string(p.ecdsa.KeyPEM()))
}

// loadTLS loads a mail block body (from its third line) with dir as the
// prefix, returning the warnings logged.
func loadTLS(t *testing.T, dir, body string) (*Config, string, error) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := LoadBytes("test.conf", []byte("mail {\nauth_http 127.0.0.1:9000/auth;\n"+body+"\n}\n"), dir, Options{Logger: log})
	return cfg, logs.String(), err
}

func mustTLS(t *testing.T, dir, body string) []*session.TLS {
	t.Helper()
	cfg, _, err := loadTLS(t, dir, body)
	if err != nil {
		t.Fatal(err)
	}
	return tlsOf(cfg.Proxy.Servers)
}

func tlsOf(servers []mailproxy.ServerConfig) []*session.TLS {
	var ts []*session.TLS
	for _, s := range servers {
		ts = append(ts, coreOf(s.Server).TLS)
	}
	return ts
}

const pair = "ssl_certificate rsa.crt; ssl_certificate_key rsa.key;\n"

// cipherNames returns the OpenSSL names of ids.
func cipherNames(ids []uint16) []string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = openssl.CipherName(id)
	}
	return names
}

func leafNames(c *tls.Config) []string {
	var names []string
	for _, cert := range c.Certificates {
		names = append(names, fmt.Sprintf("%T/%d", cert.PrivateKey, len(cert.Certificate)))
	}
	return names
}

func TestTLSDirectives(t *testing.T) {
	dir := tlsDir(t)
	p := certs(t)
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, ts []*session.TLS)
	}{
		{"defaults", pair + "server { listen 993 ssl; protocol imap; }", func(t *testing.T, ts []*session.TLS) {
			c := ts[0].Config
			if c.MinVersion != tls.VersionTLS12 || c.MaxVersion != tls.VersionTLS13 || c.CipherSuites != nil || c.CurvePreferences != nil {
				t.Errorf("versions %x-%x, suites %v, curves %v", c.MinVersion, c.MaxVersion, c.CipherSuites, c.CurvePreferences)
			}
			if c.SessionTicketsDisabled || c.WrapSession == nil || c.UnwrapSession == nil {
				t.Error("session tickets are not on")
			}
			if ts[0].StartTLS != session.StartTLSOff || ts[0].Verify != session.VerifyOff || ts[0].VerifyDepth != 1 {
				t.Errorf("got %+v", ts[0])
			}
			if !slices.Equal(leafNames(c), []string{"*rsa.PrivateKey/1"}) || !c.Certificates[0].Leaf.Equal(p.rsa.Cert) {
				t.Errorf("certificates %v", leafNames(c))
			}
		}},
		{"no certificate, no TLS", "server { listen 143; protocol imap; }", func(t *testing.T, ts []*session.TLS) {
			if ts[0] != nil {
				t.Errorf("TLS %+v", ts[0])
			}
		}},
		{"starttls inherited and replaced", pair + "starttls only;\nserver { listen 143; protocol imap; }\nserver { listen 25; protocol smtp; starttls on; }\nserver { listen 110; starttls off; }",
			func(t *testing.T, ts []*session.TLS) {
				if ts[0].StartTLS != session.StartTLSOnly || ts[1].StartTLS != session.StartTLSOn || ts[2].StartTLS != session.StartTLSOff {
					t.Errorf("starttls %d %d %d", ts[0].StartTLS, ts[1].StartTLS, ts[2].StartTLS)
				}
			}},
		{"two pairs, and a server replacing the list", "ssl_certificate rsa.crt; ssl_certificate_key rsa.key;\nssl_certificate ecdsa.crt; ssl_certificate_key ecdsa.key;\n" +
			"server { listen 993 ssl; }\nserver { listen 995 ssl; ssl_certificate chain.crt; ssl_certificate_key chain.key; }",
			func(t *testing.T, ts []*session.TLS) {
				if got := leafNames(ts[0].Config); !slices.Equal(got, []string{"*rsa.PrivateKey/1", "*ecdsa.PrivateKey/1"}) {
					t.Errorf("first server %v", got)
				}
				if got := leafNames(ts[1].Config); !slices.Equal(got, []string{"*ecdsa.PrivateKey/2"}) {
					t.Errorf("second server %v, want the chain alone", got)
				}
			}},
		{"data: values", inlineCertificate(t) + "\nserver { listen 993 ssl; }", func(t *testing.T, ts []*session.TLS) {
			if !ts[0].Config.Certificates[0].Leaf.Equal(p.ecdsa.Cert) {
				t.Error("wrong certificate")
			}
		}},
		{"absolute paths", "ssl_certificate " + filepath.Join(dir, "ecdsa.crt") + "; ssl_certificate_key " + filepath.Join(dir, "ecdsa.key") + ";\nserver { listen 993 ssl; }",
			func(t *testing.T, ts []*session.TLS) {
				if !ts[0].Config.Certificates[0].Leaf.Equal(p.ecdsa.Cert) {
					t.Error("wrong certificate")
				}
			}},
		{"versions, ciphers, curves", pair + "ssl_protocols TLSv1 TLSv1.1; ssl_ciphers ECDHE+AESGCM; ssl_ecdh_curve X25519:prime256v1:secp384r1;\nserver { listen 993 ssl; }\n" +
			"server { listen 995 ssl; ssl_protocols TLSv1.3; ssl_ciphers HIGH:!aNULL:!MD5; ssl_ecdh_curve auto; }",
			func(t *testing.T, ts []*session.TLS) {
				c := ts[0].Config
				if c.MinVersion != tls.VersionTLS10 || c.MaxVersion != tls.VersionTLS11 {
					t.Errorf("versions %x-%x", c.MinVersion, c.MaxVersion)
				}
				if got := cipherNames(c.CipherSuites); !slices.Equal(got, []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"}) {
					t.Errorf("ciphers %q", got)
				}
				if !slices.Equal(c.CurvePreferences, []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}) {
					t.Errorf("curves %v", c.CurvePreferences)
				}
				c = ts[1].Config
				if c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13 || c.CipherSuites != nil || c.CurvePreferences != nil {
					t.Errorf("second server: versions %x-%x, ciphers %v, curves %v", c.MinVersion, c.MaxVersion, c.CipherSuites, c.CurvePreferences)
				}
			}},
		{"client certificates", pair + "ssl_verify_client optional; ssl_verify_depth 2; ssl_client_certificate client-ca.crt; ssl_trusted_certificate trusted-ca.crt; ssl_crl client-ca.crl;\n" +
			"server { listen 993 ssl; }\nserver { listen 995 ssl; ssl_verify_client optional_no_ca; ssl_client_certificate ca.crt; }\nserver { listen 465 ssl; ssl_verify_client off; }",
			func(t *testing.T, ts []*session.TLS) {
				v := ts[0]
				if v.Verify != session.VerifyOptional || v.VerifyDepth != 2 || len(v.ClientCAs) != 1 || !v.ClientCAs[0].Equal(p.clientCA.Cert) ||
					len(v.TrustedCAs) != 1 || !v.TrustedCAs[0].Equal(p.trustCA.Cert) || len(v.CRLs) != 1 ||
					v.CRLs[0].RevokedCertificateEntries[0].SerialNumber.Cmp(p.revoked.Cert.SerialNumber) != 0 {
					t.Errorf("first server %+v", v)
				}
				if v := ts[1]; v.Verify != session.VerifyOptionalNoCA || !v.ClientCAs[0].Equal(p.ca.Cert) {
					t.Errorf("second server %+v", v)
				}
				if v := ts[2]; v.Verify != session.VerifyOff || v.ClientCAs != nil || v.CRLs != nil {
					t.Errorf("third server %+v", v)
				}
			}},
		{"optional_no_ca needs no CA", pair + "ssl_verify_client optional_no_ca; server { listen 993 ssl; }", func(t *testing.T, ts []*session.TLS) {
			if ts[0].Verify != session.VerifyOptionalNoCA {
				t.Errorf("verify %d", ts[0].Verify)
			}
		}},
		{"ssl_conf_command after the directives", pair + "ssl_ciphers HIGH; ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519:P-384;\n" +
			"ssl_conf_command CipherString ECDHE+CHACHA20; ssl_conf_command minprotocol TLSv1.3; ssl_conf_command Groups P-256;\n" +
			"ssl_conf_command Options -SessionTicket,ServerPreference; ssl_conf_command Certificate ecdsa.crt; ssl_conf_command PrivateKey ecdsa.key;\n" +
			"server { listen 993 ssl; }\nserver { listen 995 ssl; ssl_conf_command MaxProtocol TLSv1.2; ssl_conf_command Certificate combined.pem; }",
			func(t *testing.T, ts []*session.TLS) {
				c := ts[0].Config
				if got := cipherNames(c.CipherSuites); !slices.Equal(got, []string{"ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}) {
					t.Errorf("ciphers %q", got)
				}
				if c.MinVersion != tls.VersionTLS13 || !slices.Equal(c.CurvePreferences, []tls.CurveID{tls.CurveP256}) || !c.SessionTicketsDisabled {
					t.Errorf("min %x curves %v tickets disabled %v", c.MinVersion, c.CurvePreferences, c.SessionTicketsDisabled)
				}
				if got := leafNames(c); !slices.Equal(got, []string{"*rsa.PrivateKey/1", "*ecdsa.PrivateKey/1"}) {
					t.Errorf("certificates %v", got)
				}
				c = ts[1].Config // its own list replaces the inherited one
				if c.MinVersion != tls.VersionTLS12 || c.MaxVersion != tls.VersionTLS12 || c.SessionTicketsDisabled || c.CurvePreferences[0] != tls.X25519 {
					t.Errorf("second server: %x-%x tickets disabled %v curves %v", c.MinVersion, c.MaxVersion, c.SessionTicketsDisabled, c.CurvePreferences)
				}
				if got := leafNames(c); !slices.Equal(got, []string{"*rsa.PrivateKey/1", "*ecdsa.PrivateKey/1"}) {
					t.Errorf("second server: certificates %v (the key comes from the certificate file)", got)
				}
			}},
		{"sessions", pair + "ssl_session_tickets off;\nserver { listen 993 ssl; }\nserver { listen 995 ssl; ssl_session_cache builtin:100; }\n" +
			"server { listen 465 ssl; ssl_session_cache shared:A:1m; }\nserver { listen 587 ssl; ssl_session_tickets on; ssl_session_ticket_key tk48; ssl_session_ticket_key tk80; }",
			func(t *testing.T, ts []*session.TLS) {
				if c := ts[0].Config; !c.SessionTicketsDisabled || c.WrapSession != nil {
					t.Error("tickets off without a cache still resumes")
				}
				for i, tt := range ts[1:] {
					if c := tt.Config; c.SessionTicketsDisabled || c.WrapSession == nil || c.UnwrapSession == nil {
						t.Errorf("server %d does not resume", i+1)
					}
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustTLS(t, dir, tt.body))
		})
	}
}

func TestTLSErrors(t *testing.T) {
	dir := tlsDir(t)
	if err := os.WriteFile(filepath.Join(dir, "garbage.crt"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "short"), []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body, want string
	}{
		{"listen ssl without certificate", "server {\nlisten 143;\nlisten 993 ssl;\n}",
			`test.conf:5: no "ssl_certificate" is defined for the "listen ... ssl" directive`},
		{"starttls without certificate", "server {\nlisten 143;\nstarttls on;\n}",
			`test.conf:5: no "ssl_certificate" is defined for the "starttls" directive`},
		{"inherited starttls without certificate", "starttls only;\nserver {\nlisten 143;\n}",
			`test.conf:3: no "ssl_certificate" is defined for the "starttls" directive`},
		{"certificate without key", "ssl_certificate rsa.crt;\nserver {\nlisten 993 ssl;\n}",
			`test.conf:3: no "ssl_certificate_key" is defined for certificate "rsa.crt"`},
		{"second certificate without key", pair + "server {\nlisten 993 ssl;\nssl_certificate ecdsa.crt;\nssl_certificate rsa.crt;\n}",
			`test.conf:7: no "ssl_certificate_key" is defined for certificate "rsa.crt"`},
		{"missing certificate", "ssl_certificate nope.crt; ssl_certificate_key rsa.key;\nserver { listen 993 ssl; }",
			`test.conf:3: cannot load certificate "nope.crt": open ` + filepath.Join(dir, "nope.crt") + `: no such file or directory`},
		{"corrupt certificate", "ssl_certificate garbage.crt; ssl_certificate_key rsa.key;\nserver { listen 993 ssl; }",
			`test.conf:3: cannot load certificate "garbage.crt": certificate 1: x509: malformed certificate`},
		{"not a certificate", "ssl_certificate rsa.key; ssl_certificate_key rsa.key;\nserver { listen 993 ssl; }",
			`test.conf:3: cannot load certificate "rsa.key": no PEM certificate found`},
		{"not a key", "ssl_certificate rsa.crt;\nssl_certificate_key rsa.crt;\nserver { listen 993 ssl; }",
			`test.conf:4: cannot load certificate key "rsa.crt": no PEM private key found`},
		{"key of another certificate", "ssl_certificate rsa.crt;\nssl_certificate_key other.key;\nserver { listen 993 ssl; }",
			`test.conf:4: certificate key "other.key" does not match certificate "rsa.crt" (key values mismatch)`},
		{"bad data: certificate", "ssl_certificate data:nothing; ssl_certificate_key rsa.key;\nserver { listen 993 ssl; }",
			`test.conf:3: cannot load certificate "data:…": no PEM certificate found`},
		{"missing password file", pair + "ssl_password_file nope;\nserver { listen 993 ssl; }",
			`test.conf:4: cannot read password file: open ` + filepath.Join(dir, "nope") + `: no such file or directory`},
		{"verify without CA", pair + "server {\nlisten 993 ssl;\nssl_verify_client on;\n}",
			`test.conf:6: no ssl_client_certificate or ssl_trusted_certificate for ssl_verify_client`},
		{"optional verify without CA", pair + "ssl_verify_client optional;\nssl_crl client-ca.crl;\nserver { listen 993 ssl; }",
			`test.conf:4: no ssl_client_certificate or ssl_trusted_certificate for ssl_verify_client`},
		{"bad CA file", pair + "ssl_verify_client on;\nssl_client_certificate rsa.key;\nserver { listen 993 ssl; }",
			`test.conf:5: cannot load CA certificates "rsa.key": no PEM certificate found`},
		{"bad CRL file", pair + "ssl_verify_client on; ssl_trusted_certificate ca.crt;\nssl_crl ca.crt;\nserver { listen 993 ssl; }",
			`test.conf:5: cannot load CRL "ca.crt": no PEM X509 CRL found`},
		{"bad dhparam", pair + "ssl_dhparam ca.crt;\nserver { listen 993 ssl; }",
			`test.conf:4: cannot load DH parameters "ca.crt": no PEM DH PARAMETERS found`},
		{"ticket key of the wrong size", pair + "ssl_session_ticket_key tk48;\nssl_session_ticket_key short;\nserver { listen 993 ssl; }",
			`test.conf:5: "short" must be 48 or 80 bytes`},
		{"no cipher", "ssl_ciphers CAMELLIA:!HIGH;", `test.conf:3: no cipher match in "CAMELLIA:!HIGH" in "ssl_ciphers" directive`},
		{"bad cipher string", "ssl_ciphers HIGH:@FAST;", `test.conf:3: invalid command "@FAST" in cipher string in "ssl_ciphers" directive`},
		{"no curve", "ssl_ecdh_curve zorglub;", `test.conf:3: no curve crypto/tls supports in "zorglub" in "ssl_ecdh_curve" directive`},
		{"only SSL versions", pair + "ssl_protocols SSLv2 SSLv3;\nserver { listen 993 ssl; }", `test.conf:4: no TLS version is enabled (only SSLv2 SSLv3)`},
		{"versions narrowed to none", pair + "ssl_conf_command MaxProtocol TLSv1.1;\nserver { listen 993 ssl; }", `test.conf:4: no TLS version is enabled`},
		{"unknown conf command", "ssl_conf_command Zorglub 1;", `test.conf:3: SSL_CONF_cmd("Zorglub", "1") failed: unknown cmd name in "ssl_conf_command" directive`},
		{"bad protocol", "ssl_conf_command MinProtocol TLSv9;", `test.conf:3: SSL_CONF_cmd("MinProtocol", "TLSv9") failed: bad value in "ssl_conf_command" directive`},
		{"bad option", "ssl_conf_command Options -Frobnicate;", `test.conf:3: SSL_CONF_cmd("Options", "-Frobnicate") failed: bad value in "ssl_conf_command" directive`},
		{"bad conf cipher string", "ssl_conf_command CipherString PSK;", `test.conf:3: SSL_CONF_cmd("CipherString", "PSK") failed: no cipher match in "PSK" in "ssl_conf_command" directive`},
		{"key before certificate", pair + "ssl_conf_command PrivateKey ecdsa.key;\nserver { listen 993 ssl; }",
			`test.conf:4: SSL_CONF_cmd("PrivateKey", "ecdsa.key") failed: no Certificate command before it`},
		{"session cache too small", "ssl_session_cache shared:SSL:1k;", `test.conf:3: session cache "shared:SSL:1k" is too small in "ssl_session_cache" directive`},
		{"bad session cache", "ssl_session_cache builtin:lots;", `test.conf:3: invalid session cache "builtin:lots" in "ssl_session_cache" directive`},
		{"zone sizes disagree", pair + "ssl_session_cache shared:SSL:1m;\nserver { listen 993 ssl; }\nserver { listen 995 ssl;\nssl_session_cache shared:SSL:2m; }",
			`test.conf:7: the size 2097152 of shared memory zone "SSL" conflicts with already declared size 1048576`},
		{"duplicate password file", "ssl_password_file a;\nssl_password_file b;", `test.conf:4: "ssl_password_file" directive is duplicate`},
		{"bad verify depth", "ssl_verify_depth -1;", `test.conf:3: invalid number "-1" in "ssl_verify_depth" directive`},
		{"bad session timeout", "ssl_session_timeout soon;", `test.conf:3: invalid time "soon" in "ssl_session_timeout" directive`},
		{"bad tickets flag", "ssl_session_tickets yes;", `test.conf:3: invalid value "yes", it must be "on" or "off" in "ssl_session_tickets" directive`},
		{"bad prefer flag", "ssl_prefer_server_ciphers yes;", `test.conf:3: invalid value "yes", it must be "on" or "off" in "ssl_prefer_server_ciphers" directive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadTLS(t, dir, tt.body)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			if _, ok := err.(*Error); !ok {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

// The default ssl_ciphers enables what crypto/tls enables by default for
// TLS 1.2, so leaving Config.CipherSuites nil keeps nginx's default.
func TestDefaultCiphersAreGoDefaults(t *testing.T) {
	got, err := openssl.ParseCipherString(defaultCiphers)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint16
	for _, s := range tls.CipherSuites() {
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS13) {
			want = append(want, s.ID)
		}
	}
	slices.Sort(want)
	ids := slices.Sorted(slices.Values(got.CipherSuites))
	if !slices.Equal(ids, want) {
		t.Errorf("%s gives %q, crypto/tls enables %q", defaultCiphers, cipherNames(ids), cipherNames(want))
	}
}

// Every directive crypto/tls cannot honour is accepted with a warning
// that names it and says what is not done; each is logged once.
func TestTLSWarnings(t *testing.T) {
	dir := tlsDir(t)
	tests := []struct {
		name string
		body string
		want []string // one per warning, in order
	}{
		{"all honoured", pair + "ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers ECDHE+AESGCM:!aNULL:!MD5:@STRENGTH; ssl_prefer_server_ciphers on;\n" +
			"ssl_ecdh_curve X25519:P-256; ssl_session_cache shared:S:10m builtin:1000; ssl_session_timeout 1h;\n" +
			"ssl_conf_command Options ServerPreference,PrioritizeChaCha,-Compression,NoRenegotiation,-EncryptThenMac;\n" +
			"ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256;\n" +
			"server { listen 993 ssl; }\nserver { listen 143; starttls only; }", nil},
		{"SSL versions", pair + "ssl_protocols SSLv3 TLSv1.2;\nserver { listen 993 ssl; }\nserver { listen 995 ssl; }",
			[]string{`msg="SSL versions are never offered: crypto/tls has only TLS" directive=ssl_protocols at=test.conf:4 ignored=SSLv3`}},
		{"a gap in the versions", pair + "ssl_protocols TLSv1 TLSv1.2;\nserver { listen 993 ssl; }",
			[]string{`msg="crypto/tls takes a range of versions: the versions between are enabled too" directive=ssl_protocols at=test.conf:4 enabled="TLSv1 TLSv1.1 TLSv1.2"`}},
		{"ciphers", "ssl_ciphers ECDHE+AESGCM:EDH+AESGCM:CAMELLIA:kRSA:@SECLEVEL=1;",
			[]string{`msg="ciphers crypto/tls does not have are left out" directive=ssl_ciphers at=test.conf:3 ciphers="EDH+AESGCM CAMELLIA"`,
				`msg="insecure ciphers are left out unless named one by one" directive=ssl_ciphers at=test.conf:3 ciphers=kRSA`,
				`msg="@SECLEVEL is not applied: crypto/tls has its own key and signature policy" directive=ssl_ciphers at=test.conf:3 seclevel=1`}},
		{"client's preference", "ssl_prefer_server_ciphers off;",
			[]string{`msg="the client's cipher preference is not followed: crypto/tls always chooses by its own order" directive=ssl_prefer_server_ciphers at=test.conf:3`}},
		{"curves", "ssl_ecdh_curve X448:X25519:ffdhe2048;",
			[]string{`msg="curves crypto/tls does not have are left out" directive=ssl_ecdh_curve at=test.conf:3 curves="X448 ffdhe2048"`}},
		{"dhparam", pair + "ssl_dhparam dh.pem;\nserver { listen 993 ssl; }",
			[]string{`msg="DH parameters are not used: crypto/tls has no finite-field DHE" directive=ssl_dhparam at=test.conf:4`}},
		{"long sessions", "ssl_session_timeout 8d;",
			[]string{`msg="sessions are resumed for at most 7 days: crypto/tls refuses older ones" directive=ssl_session_timeout at=test.conf:3`}},
		{"verify depth 0", "ssl_verify_depth 0;",
			[]string{`msg="a depth of 0 is taken as 1: the client's certificate and its issuer" directive=ssl_verify_depth at=test.conf:3`}},
		{"key without certificate", pair + "ssl_certificate_key ecdsa.key;\nserver { listen 993 ssl; }\nserver { listen 143; }",
			[]string{`msg="not used: no ssl_certificate goes with it" directive=ssl_certificate_key at=test.conf:4`}},
		{"conf commands", "ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_CCM_SHA256;\nssl_conf_command Options -ServerPreference,Bugs,+SessionTicket;\n" +
			"ssl_conf_command SignatureAlgorithms ECDSA+SHA256;\nssl_conf_command CipherString HIGH:CAMELLIA;\nssl_conf_command Curves X448:P-256;",
			[]string{`msg="TLS 1.3 suites cannot be chosen: crypto/tls always enables TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256" directive=ssl_conf_command at=test.conf:3 ciphersuites=TLS_AES_256_GCM_SHA384:TLS_AES_128_CCM_SHA256`,
				`msg="OpenSSL options not honoured by crypto/tls" directive=ssl_conf_command at=test.conf:4 options="-ServerPreference +Bugs"`,
				`msg="OpenSSL command not honoured by crypto/tls" directive=ssl_conf_command at=test.conf:5 command=SignatureAlgorithms`,
				`msg="ciphers crypto/tls does not have are left out" directive=ssl_conf_command at=test.conf:6 ciphers=CAMELLIA`,
				`msg="curves crypto/tls does not have are left out" directive=ssl_conf_command at=test.conf:7 curves=X448`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, logs, err := loadTLS(t, dir, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
				if line != "" {
					_, rest, _ := strings.Cut(line, "level=WARN ")
					got = append(got, rest)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// serveTLS serves cfg on a real socket: each connection gets the
// handshake, one byte ("x") and the end. It returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					tc.Write([]byte("x"))
					tc.Close() // with a close_notify
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dialTLS connects with client and returns the connection state once the
// server's byte has arrived (which, in TLS 1.3, brings the tickets).
func dialTLS(t *testing.T, addr string, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, client)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

func clientConfig(t *testing.T) *tls.Config {
	p := certs(t)
	return &tls.Config{ServerName: "localhost", RootCAs: testutil.Pool(p.ca)}
}

// crypto/tls picks, of the pairs of a server, the one the client supports.
func TestCertificateSelection(t *testing.T) {
	dir := tlsDir(t)
	ts := mustTLS(t, dir, "ssl_certificate rsa.crt; ssl_certificate_key rsa.key; ssl_certificate ecdsa.crt; ssl_certificate_key ecdsa.key;\nserver { listen 993 ssl; }")
	addr := serveTLS(t, ts[0].Config)
	tests := []struct {
		name   string
		suites []uint16
		want   x509.PublicKeyAlgorithm
	}{
		{"ECDSA only", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, x509.ECDSA},
		{"RSA only", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}, x509.RSA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := clientConfig(t)
			client.CipherSuites, client.MaxVersion = tt.suites, tls.VersionTLS12
			st, err := dialTLS(t, addr, client)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.PeerCertificates[0].PublicKeyAlgorithm; got != tt.want {
				t.Errorf("got a %v certificate, want %v", got, tt.want)
			}
		})
	}
}

// ssl_conf_command Certificate and PrivateKey override ssl_certificate as
// OpenSSL applies them: OpenSSL holds one certificate for each type of key,
// and a Certificate command replaces the one of its type, so that clients
// get the command's certificate; one of another type is added beside it.
// Without a PrivateKey command, a renewed certificate keeps the key of the
// one it replaces.
func TestConfCommandCertificate(t *testing.T) {
	dir := tlsDir(t)
	p := certs(t)
	renewed := *p.rsa // a new certificate for the same key
	renewed.Cert, renewed.DER = renew(t, p.ca, p.rsa)
	if err := os.WriteFile(filepath.Join(dir, "rsa-renewed.crt"), renewed.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ecdsaOnly := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	rsaOnly := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	type client struct {
		suites []uint16 // TLS 1.2 with these; nil: TLS 1.3, any certificate
		want   *testutil.Cert
	}
	tests := []struct {
		name    string
		body    string
		pairs   []string // leafNames
		clients []client
	}{
		{"an RSA certificate replaces the RSA one", pair + "ssl_conf_command Certificate other-rsa.crt; ssl_conf_command PrivateKey other-rsa.key;\nserver { listen 993 ssl; }",
			[]string{"*rsa.PrivateKey/1"}, []client{{nil, p.otherRSA}, {rsaOnly, p.otherRSA}}},
		{"in a server block, over the mail block's ssl_certificate", pair + "server { listen 993 ssl; ssl_conf_command Certificate other-rsa.crt; ssl_conf_command PrivateKey other-rsa.key; }",
			[]string{"*rsa.PrivateKey/1"}, []client{{nil, p.otherRSA}}},
		{"an ECDSA certificate replaces the ECDSA one, the RSA one stays",
			pair + "ssl_certificate ecdsa.crt; ssl_certificate_key ecdsa.key;\nssl_conf_command Certificate other.crt; ssl_conf_command PrivateKey other.key;\nserver { listen 993 ssl; }",
			[]string{"*rsa.PrivateKey/1", "*ecdsa.PrivateKey/1"}, []client{{ecdsaOnly, p.otherECD}, {rsaOnly, p.rsa}}},
		{"a certificate of another type is added", pair + "ssl_conf_command Certificate ecdsa.crt; ssl_conf_command PrivateKey ecdsa.key;\nserver { listen 993 ssl; }",
			[]string{"*rsa.PrivateKey/1", "*ecdsa.PrivateKey/1"}, []client{{ecdsaOnly, p.ecdsa}, {rsaOnly, p.rsa}}},
		{"the later of two commands of a type wins", pair + "ssl_conf_command Certificate other.crt; ssl_conf_command PrivateKey other.key;\n" +
			"ssl_conf_command Certificate combined.pem;\nserver { listen 993 ssl; }",
			[]string{"*rsa.PrivateKey/1", "*ecdsa.PrivateKey/1"}, []client{{ecdsaOnly, p.ecdsa}}},
		{"a renewed certificate keeps the key", pair + "ssl_conf_command Certificate rsa-renewed.crt;\nserver { listen 993 ssl; }",
			[]string{"*rsa.PrivateKey/1"}, []client{{nil, &renewed}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustTLS(t, dir, tt.body)[0].Config
			if got := leafNames(c); !slices.Equal(got, tt.pairs) {
				t.Errorf("certificates %v, want %v", got, tt.pairs)
			}
			addr := serveTLS(t, c)
			for _, cl := range tt.clients {
				cfg := clientConfig(t)
				if cl.suites != nil {
					cfg.CipherSuites, cfg.MaxVersion = cl.suites, tls.VersionTLS12
				}
				st, err := dialTLS(t, addr, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if got := st.PeerCertificates[0]; !got.Equal(cl.want.Cert) {
					t.Errorf("suites %v: the client got %q serial %x, want serial %x", cl.suites, got.Subject, got.SerialNumber, cl.want.Cert.SerialNumber)
				}
			}
		})
	}
}

// renew issues, with ca, a new certificate for the key of cert.
func renew(t *testing.T, ca, cert *testutil.Cert) (*x509.Certificate, []byte) {
	t.Helper()
	tmpl := *cert.Cert
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Cert, cert.Key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, der
}

// A certificate file holds the chain after the server's certificate, and
// the client gets it all.
func TestCertificateChain(t *testing.T) {
	dir := tlsDir(t)
	ts := mustTLS(t, dir, "ssl_certificate chain.crt; ssl_certificate_key chain.key;\nserver { listen 993 ssl; }")
	st, err := dialTLS(t, serveTLS(t, ts[0].Config), clientConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PeerCertificates) != 2 || len(st.VerifiedChains[0]) != 3 {
		t.Errorf("%d certificates sent, chain of %d", len(st.PeerCertificates), len(st.VerifiedChains[0]))
	}
}

// Certificates are read by Load, so a reload (Load again, then
// Proxy.Reload) takes new files, and a bad new file fails the Load with a
// clear error while the configuration running goes on.
func TestReloadReadsCertificates(t *testing.T) {
	dir := tlsDir(t)
	p := certs(t)
	conf := filepath.Join(dir, "mail.conf")
	src := "mail {\nauth_http 127.0.0.1:9000/auth;\nssl_certificate server.crt;\nssl_certificate_key server.key;\nserver { listen 993 ssl; }\n}\n"
	if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p.rsa.WriteFiles(t, dir, "server")
	first, err := Load(conf, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	p.ecdsa.WriteFiles(t, dir, "server")
	second, err := Load(conf, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(c *Config) *x509.Certificate { return tlsOf(c.Proxy.Servers)[0].Config.Certificates[0].Leaf }
	if !leaf(first).Equal(p.rsa.Cert) || !leaf(second).Equal(p.ecdsa.Cert) {
		t.Error("the reload did not read the new certificate")
	}

	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	corrupt := bytes.Replace(p.rsa.CertPEM(), []byte("\n"), []byte("\n!"), 3)
	write("server.crt", corrupt)
	if _, err := Load(conf, Options{Logger: quiet()}); err == nil || err.Error() != conf+`:3: cannot load certificate "server.crt": no PEM certificate found` {
		t.Errorf("corrupt certificate: %v", err)
	}
	write("server.crt", p.rsa.CertPEM())
	write("server.key", p.otherRSA.KeyPEM())
	if _, err := Load(conf, Options{Logger: quiet()}); err == nil || err.Error() != conf+`:4: certificate key "server.key" does not match certificate "server.crt" (key values mismatch)` {
		t.Errorf("key of another certificate: %v", err)
	}
	if !leaf(second).Equal(p.ecdsa.Cert) {
		t.Error("a failed load changed the loaded configuration")
	}
}

// testdata/tls.conf uses every TLS directive; its files are made here, in
// the prefix, and it loads without a warning.
func TestLoadTLSConf(t *testing.T) {
	dir := tlsDir(t)
	p := certs(t)
	if err := os.Mkdir(filepath.Join(dir, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	p.leaf.WriteFiles(t, certDir, "ecdsa", p.inter)
	p.rsa.WriteFiles(t, certDir, "rsa")
	if err := os.WriteFile(filepath.Join(certDir, "rsa.key"), p.rsa.LegacyEncryptedKeyPEM(t, "right", x509.PEMCipherAES256), 0o600); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{"client-ca.crt": "client-ca.crt", "trusted-ca.crt": "trusted-ca.crt",
		"client-ca.crl": "client-ca.crl", "tk80": "ticket-new.key", "tk48": "ticket-old.key"} {
		b, err := os.ReadFile(filepath.Join(dir, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certDir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(certDir, "passwords"), []byte("wrong\nright\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cfg, err := Load(filepath.Join("testdata", "tls.conf"), Options{Prefix: dir, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if logs.Len() > 0 {
		t.Errorf("warnings:\n%s", logs.String())
	}
	ts := tlsOf(cfg.Proxy.Servers)
	if len(ts) != 3 || !cfg.Proxy.Servers[0].Listen[0].SSL {
		t.Fatalf("%d servers", len(ts))
	}
	if got := leafNames(ts[0].Config); !slices.Equal(got, []string{"*rsa.PrivateKey/1", "*ecdsa.PrivateKey/2"}) {
		t.Errorf("certificates %v", got)
	}
	if ts[1].StartTLS != session.StartTLSOnly || ts[1].Verify != session.VerifyOptional || len(ts[1].CRLs) != 1 {
		t.Errorf("second server %+v", ts[1])
	}
	if ts[2].StartTLS != session.StartTLSOn || ts[2].Config.MinVersion != tls.VersionTLS13 {
		t.Errorf("third server %+v", ts[2])
	}
	// The IMAPS server resumes sessions across the servers' shared ticket keys.
	client := clientConfig(t)
	client.RootCAs.AddCert(p.ca.Cert)
	client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i, want := range []bool{false, true} {
		st, err := dialTLS(t, serveTLS(t, ts[0].Config), client)
		if err != nil {
			t.Fatal(err)
		}
		if st.DidResume != want {
			t.Errorf("connection %d: resumed %v", i, st.DidResume)
		}
	}
}

// A loaded configuration serves implicit TLS and STARTTLS through the
// proxy, with the certificate of its files.
func TestTLSThroughProxy(t *testing.T) {
	dir := tlsDir(t)
	src := "mail {\n" + pair + `
		server { listen 127.0.0.1:0 ssl; protocol imap; }
		server { listen 127.0.0.1:0; protocol imap; starttls only; }
	}`
	p := startProxy(t, dir, src)

	c := testutil.Dial(t, "tcp", p.ServerAddrs(0)[0].String())
	tc := tls.Client(c.Conn, clientConfig(t))
	c.R.Reset(tc)
	if l := c.Line(); !strings.HasPrefix(l, "* OK") {
		t.Errorf("implicit TLS greeting %q", l)
	}
	if st := tc.ConnectionState(); !st.PeerCertificates[0].Equal(certs(t).rsa.Cert) {
		t.Error("another certificate was sent")
	}

	c = testutil.Dial(t, "tcp", p.ServerAddrs(1)[0].String())
	c.Line()
	if caps := c.Cmd("a CAPABILITY", "a "); !strings.Contains(caps[0], " STARTTLS") || !strings.Contains(caps[0], " LOGINDISABLED") {
		t.Errorf("capabilities before TLS %q", caps)
	}
	if l := c.Cmd("b STARTTLS", "b "); !strings.HasPrefix(l[0], "b OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc = tls.Client(c.Conn, clientConfig(t))
	c.Conn = tc
	c.R.Reset(tc)
	if caps := c.Cmd("c CAPABILITY", "c "); strings.Contains(caps[0], "STARTTLS") || strings.Contains(caps[0], "LOGINDISABLED") {
		t.Errorf("capabilities after TLS %q", caps)
	}
}

// startProxy loads src, with its files in dir, and runs it until the
// test ends.
func startProxy(t *testing.T, dir, src string) *mailproxy.Proxy {
	t.Helper()
	cfg, err := LoadBytes("proxy.conf", []byte(src), dir, Options{Logger: quiet(), Auth: auth.Static{}})
	if err != nil {
		t.Fatal(err)
	}
	p := &mailproxy.Proxy{Config: cfg.Proxy, Logger: quiet()}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Resumption through a Proxy's implicit TLS listener, as the directives
// set it up: by ticket, by the session cache, and not at all.
func TestSessionResumptionThroughProxy(t *testing.T) {
	dir := tlsDir(t)
	for _, tt := range []struct {
		name, body string
		resumed    bool
	}{
		{"tickets", "", true},
		{"session cache", "ssl_session_tickets off; ssl_session_cache shared:S:1m;", true},
		{"neither", "ssl_session_tickets off; ssl_session_cache off;", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := "mail {\n" + pair + tt.body + "\nserver { listen 127.0.0.1:0 ssl; protocol imap; }\n}"
			p := startProxy(t, dir, src)
			client := clientConfig(t)
			client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			for i := range 2 {
				c := testutil.DialTLS(t, p.ServerAddrs(0)[0].String(), client)
				c.Line() // the greeting: a TLS 1.3 ticket comes before it
				resumed := c.Conn.(*tls.Conn).ConnectionState().DidResume
				if want := tt.resumed && i == 1; resumed != want {
					t.Fatalf("connection %d: resumed %v, want %v", i, resumed, want)
				}
				c.Conn.Close()
			}
		})
	}
}
