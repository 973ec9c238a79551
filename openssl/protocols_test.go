package openssl

import (
	"crypto/tls"
	"testing"
)

func TestProtocolVersion(t *testing.T) {
	tests := []struct {
		name    string
		version uint16
		ok      bool
	}{
		{"SSLv2", 0x0002, true},
		{"SSLv3", 0x0300, true},
		{"TLSv1", tls.VersionTLS10, true},
		{"TLSv1.1", tls.VersionTLS11, true},
		{"TLSv1.2", tls.VersionTLS12, true},
		{"TLSv1.3", tls.VersionTLS13, true},
		{"tlsv1.2", 0, false},
		{"TLSv1.0", 0, false},
		{"TLSv1.4", 0, false},
		{"DTLSv1.2", 0, false},
		{"None", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := ProtocolVersion(tt.name)
			if v != tt.version || ok != tt.ok {
				t.Fatalf("got %#x %v, want %#x %v", v, ok, tt.version, tt.ok)
			}
			if name := ProtocolName(v); ok && name != tt.name {
				t.Errorf("ProtocolName(%#x) = %q", v, name)
			}
		})
	}
	if name := ProtocolName(0); name != "" {
		t.Errorf("ProtocolName(0) = %q", name)
	}
}
