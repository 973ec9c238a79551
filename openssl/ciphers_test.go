package openssl

import (
	"crypto/tls"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// cipherNames returns the OpenSSL names of ids.
func cipherNames(ids []uint16) []string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = CipherName(id)
	}
	return names
}

func TestCipherString(t *testing.T) {
	tests := []struct {
		in          string
		want        []string // OpenSSL names, in order
		unsupported []string
		insecure    []string
	}{
		{in: "HIGH:!aNULL:!MD5", want: []string{
			"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
			"ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
			"ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"}},
		{in: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", want: []string{
			"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"}},
		{in: "ECDHE+AESGCM", want: []string{
			"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"}},
		{in: "ECDHE+AESGCM:+AES256", want: []string{
			"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"}},
		{in: "AESGCM+aECDSA,CHACHA20 aRSA+AES128+SHA", want: []string{
			"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
			"ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-SHA"}},
		{in: "HIGH:-AES256:AES256-GCM-SHA384:AES256", want: []string{
			"ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256",
			"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA",
			"AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
			"ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA"}},
		{in: "!CHACHA20:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256", want: []string{"ECDHE-RSA-AES128-GCM-SHA256"}},
		{in: "AES128-SHA:RC4-SHA:ECDHE-RSA-AES128-SHA", want: []string{"AES128-SHA", "RC4-SHA", "ECDHE-RSA-AES128-SHA"}},
		{in: "ECDHE-RSA-AES128-SHA:kRSA:3DES", want: []string{"ECDHE-RSA-AES128-SHA"}, insecure: []string{"kRSA", "3DES"}},
		{in: "EECDH+AESGCM:EDH+AESGCM:CAMELLIA:FOO:AES256+EECDH", want: []string{
			"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
			"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA"},
			unsupported: []string{"EDH+AESGCM", "CAMELLIA", "FOO"}},
		{in: "TLSv1.2+ECDHE+SHA256:ECDHE-RSA-AES128-SHA256", want: []string{"ECDHE-RSA-AES128-SHA256"}, insecure: []string{"TLSv1.2+ECDHE+SHA256"}},
		{in: "ECDHE+CHACHA20:ECDHE+AES128:@STRENGTH", want: []string{
			"ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256",
			"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"}},
		{in: "DEFAULT:!CHACHA20:!AES128", want: []string{
			"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA"}},
		{in: "ECDHE-RSA-AES128-SHA+AESGCM:ECDHE-RSA-AES128-SHA+SHA1", want: []string{"ECDHE-RSA-AES128-SHA"},
			unsupported: []string{"ECDHE-RSA-AES128-SHA+AESGCM"}},
		{in: "HIGH:@SECLEVEL=2:!SHA1", want: []string{
			"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
			"ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCipherString(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if names := cipherNames(got.CipherSuites); !slices.Equal(names, tt.want) {
				t.Errorf("got  %q\nwant %q", names, tt.want)
			}
			if !slices.Equal(got.Unsupported, tt.unsupported) || !slices.Equal(got.Insecure, tt.insecure) {
				t.Errorf("unsupported %q insecure %q, want %q %q", got.Unsupported, got.Insecure, tt.unsupported, tt.insecure)
			}
		})
	}
}

func TestCipherName(t *testing.T) {
	if got := CipherName(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); got != "ECDHE-RSA-AES128-GCM-SHA256" {
		t.Errorf("got %q", got)
	}
	if got := CipherName(tls.TLS_AES_128_GCM_SHA256); got != "" {
		t.Errorf("a TLS 1.3 suite is named %q", got)
	}
	// Every suite crypto/tls has for TLS 1.0 to 1.2 has its OpenSSL name.
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if !slices.Equal(s.SupportedVersions, []uint16{tls.VersionTLS13}) && CipherName(s.ID) == "" {
			t.Errorf("%s has no name", s.Name)
		}
	}
}

// SuiteName names every suite crypto/tls has as OpenSSL does: checked
// against "openssl ciphers -stdname" where the program is installed.
func TestSuiteName(t *testing.T) {
	for id, want := range map[uint16]string{
		tls.TLS_AES_256_GCM_SHA384:                      "TLS_AES_256_GCM_SHA384",
		tls.TLS_CHACHA20_POLY1305_SHA256:                "TLS_CHACHA20_POLY1305_SHA256",
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:       "ECDHE-RSA-AES128-GCM-SHA256",
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:        "ECDHE-ECDSA-AES256-SHA",
		0x00ff /* TLS_EMPTY_RENEGOTIATION_INFO_SCSV */ : "",
	} {
		if got := SuiteName(id); got != want {
			t.Errorf("SuiteName(%#04x) = %q, want %q", id, got, want)
		}
	}
	suites := append(tls.CipherSuites(), tls.InsecureCipherSuites()...)
	for _, s := range suites {
		if SuiteName(s.ID) == "" {
			t.Errorf("%s has no name", s.Name)
		}
	}
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: the names are not compared with OpenSSL's")
	}
	out, err := exec.Command(path, "ciphers", "-stdname", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").Output()
	if err != nil {
		t.Fatalf("openssl ciphers: %v", err)
	}
	openssl := map[string]string{} // standard name → OpenSSL's
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == "-" {
			openssl[f[0]] = f[2]
		}
	}
	compared := 0
	for _, s := range suites {
		want, ok := openssl[s.Name]
		if !ok {
			continue // not in this OpenSSL build (RC4, 3DES)
		}
		compared++
		if got := SuiteName(s.ID); got != want {
			t.Errorf("%s: %q, OpenSSL says %q", s.Name, got, want)
		}
	}
	if compared < 20 {
		t.Errorf("only %d suites compared with OpenSSL's list", compared)
	}
}

func TestCipherStringErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `no cipher match in ""`},
		{"CAMELLIA:PSK", `no cipher match in "CAMELLIA:PSK"`},
		{"HIGH:!HIGH", `no cipher match in "HIGH:!HIGH"`},
		{"kRSA", `no cipher match in "kRSA": crypto/tls enables its insecure suites only when named one by one`},
		{"HIGH:#x", `invalid cipher string "HIGH:#x" at "#x"`},
		{"HIGH:!", `invalid cipher string "HIGH:!" at ""`},
		{"HIGH:@FAST", `invalid command "@FAST" in cipher string`},
		{"SSLv3+!kRSA", `invalid cipher string "SSLv3+!kRSA" at "SSLv3+!kRSA"`},
		{"HIGH:@SECLEVEL=9", `invalid command "@SECLEVEL=9" in cipher string`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseCipherString(tt.in)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
}

// The order and the selection agree with the openssl command for the
// suites crypto/tls has.
func TestCipherStringMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	for _, s := range []string{
		"HIGH:!aNULL:!MD5", "ALL", "DEFAULT", "ECDHE+AESGCM:ECDHE+CHACHA20", "HIGH:-AES256:AES256",
		"EECDH+AESGCM:EDH+AESGCM:AES256+EECDH:AES256+EDH", "ECDHE:+SHA1:+AES256", "FIPS:!SHA1:!SHA256",
		"AES128:!kRSA:@STRENGTH", "TLSv1:SSLv3+aRSA:AES128-SHA", "aECDSA+SHA1:aRSA+AESGCM", "ALL:-ECDSA:ECDSA+AES128",
		"COMPLEMENTOFDEFAULT:AESGCM", "kECDHE+CBC", "HIGH:!ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
	} {
		t.Run(s, func(t *testing.T) {
			out, err := exec.Command("openssl", "ciphers", s).Output()
			if err != nil {
				t.Fatalf("openssl ciphers %q: %v", s, err)
			}
			secure := map[string]bool{}
			for _, c := range cipherTable {
				secure[c.name] = secureSuites[c.id]
			}
			var want []string
			for _, name := range strings.Split(strings.TrimSpace(string(out)), ":") {
				if secure[name] {
					want = append(want, name)
				}
			}
			got, err := ParseCipherString(s)
			if err != nil {
				t.Fatal(err)
			}
			var gotSecure []string
			for _, name := range cipherNames(got.CipherSuites) {
				if secure[name] {
					gotSecure = append(gotSecure, name)
				}
			}
			if !reflect.DeepEqual(gotSecure, want) {
				t.Errorf("got     %q\nopenssl %q", gotSecure, want)
			}
		})
	}
}

func FuzzCipherString(f *testing.F) {
	for _, s := range []string{
		"HIGH:!aNULL:!MD5", "DEFAULT", "DEFAULT:!RC4", "ECDHE+AESGCM:ECDHE+CHACHA20:+AES256",
		"EECDH+AESGCM:EDH+AESGCM:@STRENGTH", "AES128-SHA RC4-SHA,-ALL;!3DES", "@SECLEVEL=0:ALL",
		"ECDHE-RSA-AES128-SHA+SHA1", "++--!!@@", "kRSA", "HIGH:#", "a+b+c+d:e=f.g_h",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCipherString(s)
		if err != nil {
			return
		}
		if len(got.CipherSuites) == 0 {
			t.Fatal("no suite and no error")
		}
		seen := map[uint16]bool{}
		for _, id := range got.CipherSuites {
			if seen[id] {
				t.Fatalf("suite %#x twice", id)
			}
			seen[id] = true
			name := CipherName(id)
			if name == "" {
				t.Fatalf("suite %#x is not in the table", id)
			}
			if !secureSuites[id] && !strings.Contains(s, name) {
				t.Fatalf("insecure %s enabled without being named", name)
			}
		}
	})
}
