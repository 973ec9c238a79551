package engine

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecodeResponse(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		initial bool
		want    []byte // compared with bytes.Equal, and nil-ness
		err     error
	}{
		{name: "cancel", line: "*", err: errCancelled},
		{name: "cancel initial", line: "*", initial: true, err: errCancelled},
		{name: "empty initial response", line: "=", initial: true, want: []byte{}},
		{name: "= not initial", line: "=", err: errBadBase64},
		{name: "empty line", line: "", want: []byte{}},
		{name: "good", line: "YWxpY2U=", want: []byte("alice")},
		{name: "good initial", line: "YWxpY2U=", initial: true, want: []byte("alice")},
		{name: "plain credentials", line: "AGFsaWNlAHNlY3JldA==", want: []byte("\x00alice\x00secret")},
		{name: "missing padding", line: "YWxpY2U", err: errBadBase64},
		{name: "not base64", line: "!!!!", err: errBadBase64},
		{name: "URL alphabet", line: "-_-_", err: errBadBase64},
		{name: "space", line: "YWxp Y2U=", err: errBadBase64},
		{name: "two stars", line: "**", err: errBadBase64},
		{name: "padding only", line: "==", initial: true, err: errBadBase64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeResponse([]byte(tt.line), tt.initial)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				if got != nil {
					t.Errorf("got %q with an error", got)
				}
				return
			}
			if got == nil || !bytes.Equal(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestEncodeChallenge(t *testing.T) {
	for _, c := range []string{"", "Username:", "Password:", "<1896.697170952@mx.example.org>", "\x00\xff\x80 binary"} {
		t.Run(c, func(t *testing.T) {
			enc := encodeChallenge([]byte(c))
			got, err := decodeResponse([]byte(enc), false)
			if err != nil || string(got) != c {
				t.Fatalf("decodeResponse(encodeChallenge(%q) = %q) = %q, %v", c, enc, got, err)
			}
		})
	}
	if got := encodeChallenge([]byte("Username:")); got != "VXNlcm5hbWU6" {
		t.Errorf("encodeChallenge(Username:) = %q", got)
	}
}
