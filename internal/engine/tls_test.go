package engine

import (
	"crypto/tls"
	"slices"
	"testing"

	"github.com/mailproxy/mailproxy/session"
)

// The protocol's name becomes the ALPN protocol of the served copy of the
// Config; a program's own NextProtos is kept, and its Config untouched.
func TestSettleTLSALPN(t *testing.T) {
	for _, tt := range []struct {
		name  string
		given []string
		want  []string
	}{
		{"none given", nil, []string{"imap"}},
		{"the program's own", []string{"imap", "x-imap"}, []string{"imap", "x-imap"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{NextProtos: tt.given}
			st := Settle(session.Config{TLS: &session.TLS{Config: cfg}}, Protocol{Name: "imap"})
			if got := st.TLS.Config.NextProtos; !slices.Equal(got, tt.want) {
				t.Errorf("NextProtos %q, want %q", got, tt.want)
			}
			if !slices.Equal(cfg.NextProtos, tt.given) {
				t.Errorf("the program's Config changed: %q", cfg.NextProtos)
			}
		})
	}
}
