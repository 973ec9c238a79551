package config

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailproxy/mailproxy/internal/testutil"
)

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
	write("rsa.key", p.rsa.LegacyEncryptedKeyPEM(t, "second", x509.PEMCipherAES128))
	write("ecdsa.key", p.ecdsa.EncryptedKeyPEM(t, "first", testutil.PBES2AES256))
	write("passwords", []byte("first\r\nsecond"))
	write("bad-passwords", []byte("first\nthird\n"))
	body := "ssl_certificate rsa.crt; ssl_certificate_key rsa.key; ssl_certificate ecdsa.crt; ssl_certificate_key ecdsa.key;\n" +
		"ssl_password_file passwords;\nserver { listen 993 ssl; }\nserver { listen 995 ssl;\nssl_password_file bad-passwords; }"
	_, _, err := loadTLS(t, dir, body)
	if want := `test.conf:3: cannot load certificate key "rsa.key": bad decrypt: no password in "bad-passwords" decrypts it`; err == nil || err.Error() != want {
		t.Errorf("error\n got %v\nwant %s", err, want)
	}
	_, _, err = loadTLS(t, dir, "ssl_certificate ecdsa.crt; ssl_certificate_key ecdsa.key;\nserver { listen 993 ssl; }")
	if want := `test.conf:3: cannot load certificate key "ecdsa.key": the key is encrypted and no "ssl_password_file" is set`; err == nil || err.Error() != want {
		t.Errorf("no password file: error\n got %v\nwant %s", err, want)
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
