package openssl

import (
	"crypto/tls"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestParseConfCommand(t *testing.T) {
	on, off := true, false
	tests := []struct {
		name, value string
		want        ConfCommand // Ciphers aside
		ciphers     []string    // OpenSSL names of Ciphers.CipherSuites
		err         error
	}{
		{name: "CipherString", value: "ECDHE+CHACHA20", want: ConfCommand{Name: "CipherString"},
			ciphers: []string{"ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}},
		{name: "cipherstring", value: "CAMELLIA:ECDHE-RSA-AES128-GCM-SHA256", want: ConfCommand{Name: "CipherString"},
			ciphers: []string{"ECDHE-RSA-AES128-GCM-SHA256"}},
		{name: "CipherString", value: "PSK", err: ErrBadValue},
		{name: "Ciphersuites", value: "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
			want: ConfCommand{Name: "Ciphersuites"}},
		{name: "Ciphersuites", value: "TLS_AES_256_GCM_SHA384", want: ConfCommand{Name: "Ciphersuites", Ignored: []string{"Ciphersuites"}}},
		{name: "Ciphersuites", value: "", want: ConfCommand{Name: "Ciphersuites", Ignored: []string{"Ciphersuites"}}},
		{name: "minprotocol", value: "TLSv1.3", want: ConfCommand{Name: "MinProtocol", Version: tls.VersionTLS13}},
		{name: "MinProtocol", value: "SSLv3", want: ConfCommand{Name: "MinProtocol", Version: 0x0300}},
		{name: "MaxProtocol", value: "None", want: ConfCommand{Name: "MaxProtocol"}},
		{name: "MinProtocol", value: "SSLv2", err: ErrBadValue},
		{name: "MaxProtocol", value: "TLSv9", err: ErrBadValue},
		{name: "MaxProtocol", value: "DTLSv1.2", err: ErrBadValue},
		{name: "Groups", value: "X448:P-256:x25519", want: ConfCommand{Name: "Groups",
			Curves: []tls.CurveID{tls.CurveP256, tls.X25519}, UnsupportedCurves: []string{"X448"}}},
		{name: "CURVES", value: "prime256v1", want: ConfCommand{Name: "Curves", Curves: []tls.CurveID{tls.CurveP256}}},
		{name: "Groups", value: "X448", err: ErrBadValue},
		{name: "Options", value: "-SessionTicket,ServerPreference", want: ConfCommand{Name: "Options", SessionTickets: &off}},
		{name: "Options", value: " -sessionticket , +SessionTicket", want: ConfCommand{Name: "Options", SessionTickets: &on}},
		{name: "Options", value: "-ServerPreference,Bugs,+SessionTicket", want: ConfCommand{Name: "Options",
			SessionTickets: &on, Ignored: []string{"-ServerPreference", "+Bugs"}}},
		{name: "options", value: "prioritizechacha,-compression,compression", want: ConfCommand{Name: "Options",
			Ignored: []string{"+Compression"}}},
		{name: "Options", value: "-Frobnicate", err: ErrBadValue},
		{name: "Options", value: "ServerPreference,", err: ErrBadValue},
		{name: "Options", value: "", err: ErrBadValue},
		{name: "Certificate", value: "ecdsa.crt", want: ConfCommand{Name: "Certificate", File: "ecdsa.crt"}},
		{name: "privatekey", value: "ecdsa.key", want: ConfCommand{Name: "PrivateKey", File: "ecdsa.key"}},
		{name: "SignatureAlgorithms", value: "ECDSA+SHA256", want: ConfCommand{Name: "SignatureAlgorithms", Ignored: []string{"SignatureAlgorithms"}}},
		{name: "numtickets", value: "0", want: ConfCommand{Name: "NumTickets", Ignored: []string{"NumTickets"}}},
		{name: "Zorglub", value: "1", err: ErrUnknownCommand},
		{name: "", value: "", err: ErrUnknownCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			got, err := ParseConfCommand(tt.name, tt.value)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if (got.Ciphers != nil) != (tt.ciphers != nil) {
				t.Fatalf("ciphers %v", got.Ciphers)
			}
			if got.Ciphers != nil {
				if names := cipherNames(got.Ciphers.CipherSuites); !slices.Equal(names, tt.ciphers) {
					t.Errorf("ciphers %q, want %q", names, tt.ciphers)
				}
				got.Ciphers = nil
			}
			if !equalConfCommands(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func equalConfCommands(a, b ConfCommand) bool {
	tickets := func(p *bool) int {
		switch {
		case p == nil:
			return 0
		case *p:
			return 1
		}
		return -1
	}
	return a.Name == b.Name && a.Ciphers == b.Ciphers && a.Version == b.Version && slices.Equal(a.Curves, b.Curves) &&
		slices.Equal(a.UnsupportedCurves, b.UnsupportedCurves) && tickets(a.SessionTickets) == tickets(b.SessionTickets) &&
		a.File == b.File && slices.Equal(a.Ignored, b.Ignored)
}

// A CipherString that is refused says why, and is ErrBadValue too.
func TestConfCommandCipherStringError(t *testing.T) {
	_, want := ParseCipherString("HIGH:@FAST")
	_, err := ParseConfCommand("CipherString", "HIGH:@FAST")
	if err == nil || err.Error() != want.Error() || !errors.Is(err, ErrBadValue) {
		t.Errorf("error %v, want %v as ErrBadValue", err, want)
	}
}

func TestTLS13CipherSuites(t *testing.T) {
	want := []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
	if got := TLS13CipherSuites(); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// MinProtocol and MaxProtocol take the versions the openssl command takes
// for -min_protocol and -max_protocol (which it passes to SSL_CONF_cmd).
// DTLS versions are left out: OpenSSL accepts them, and ignores them,
// where ParseConfCommand refuses them.
func TestMinMaxProtocolMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	for _, cmd := range []string{"MinProtocol", "MaxProtocol"} {
		flag := "-" + strings.ToLower(cmd[:3]) + "_protocol"
		for _, v := range []string{"None", "SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "TLSv1.0", "tlsv1.2", "none", "TLSv9", ""} {
			t.Run(cmd+"/"+v, func(t *testing.T) {
				// The connection is refused; a value SSL_CONF_cmd refuses
				// stops the command before it connects.
				out, _ := exec.Command("openssl", "s_client", "-connect", "127.0.0.1:1", flag, v).CombinedOutput()
				refused := strings.Contains(string(out), "Call to SSL_CONF_cmd(")
				_, err := ParseConfCommand(cmd, v)
				if (err != nil) != refused {
					t.Errorf("error %v; openssl %s %q: %s", err, flag, v, out)
				}
			})
		}
	}
}

func FuzzConfCommand(f *testing.F) {
	for _, c := range [][2]string{
		{"CipherString", "HIGH:!aNULL:!MD5"}, {"Ciphersuites", "TLS_AES_128_GCM_SHA256"}, {"MinProtocol", "TLSv1.2"},
		{"maxprotocol", "None"}, {"Groups", "X25519:?X448:*P-256"}, {"Options", "-SessionTicket, +Bugs,-"},
		{"Options", "+,,-"}, {"Certificate", "a.pem"}, {"PrivateKey", ""}, {"VerifyMode", "Peer"}, {"Zorglub", "1"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		c, err := ParseConfCommand(name, value)
		if err != nil {
			if !errors.Is(err, ErrUnknownCommand) && !errors.Is(err, ErrBadValue) {
				t.Fatalf("error %v is neither ErrUnknownCommand nor ErrBadValue", err)
			}
			return
		}
		if !strings.EqualFold(c.Name, name) {
			t.Fatalf("%q read as %q", name, c.Name)
		}
		if (c.Ciphers != nil) != (c.Name == "CipherString") {
			t.Fatalf("%s with ciphers %v", c.Name, c.Ciphers)
		}
		if c.Version != 0 && ProtocolName(c.Version) == "" {
			t.Fatalf("version %#x has no name", c.Version)
		}
		if c.Name != "Options" && len(c.Ignored) > 1 {
			t.Fatalf("%s ignores %q", c.Name, c.Ignored)
		}
	})
}
