package testutil

import (
	"bytes"
	"testing"
)

func TestBenchMessage(t *testing.T) {
	for _, size := range []int{128, 129, 1000, 4096, 64 << 20} {
		msg := BenchMessage(size)
		if len(msg) != size || !bytes.HasSuffix(msg, []byte("\r\n")) || bytes.Contains(msg, []byte("\n.")) {
			t.Errorf("BenchMessage(%d) is %d bytes, ends with %q", size, len(msg), msg[max(0, len(msg)-2):])
		}
	}
}

func TestBenchRates(t *testing.T) {
	if got := SessionsPerSecond(2e6); got != 500 {
		t.Errorf("SessionsPerSecond(2ms) = %v, want 500", got)
	}
	if got := MiBPerSecond(64 << 20)(0.5e9); got != 128 {
		t.Errorf("MiBPerSecond(64 MiB)(0.5s) = %v, want 128", got)
	}
}
