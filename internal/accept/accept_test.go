package accept

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRetryable(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
	}
	tests := []struct {
		err  error
		want bool
	}{
		{opErr(syscall.EMFILE), true},
		{opErr(syscall.ENFILE), true},
		{opErr(syscall.ENOBUFS), true},
		{opErr(syscall.ENOMEM), true},
		{opErr(syscall.ECONNABORTED), true},
		{opErr(syscall.EPERM), true},
		{fmt.Errorf("wrapped: %w", net.ErrClosed), false},
		{opErr(syscall.EBADF), false},
		{opErr(syscall.EINVAL), false},
		{opErr(syscall.ENOTSOCK), false},
		{errors.New("something new"), true},
	}
	for _, tt := range tests {
		if got := Retryable(tt.err); got != tt.want {
			t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// The pause doubles from 5ms to one second and starts again after an
// accept; a burst of errors gives one log line, which counts the others.
func TestRetrier(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	var r Retrier
	var pauses []time.Duration
	for range 10 {
		pauses = append(pauses, r.Failed(log, "imap", syscall.EMFILE))
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, p := range pauses {
		if p != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", pauses, want)
		}
	}
	r.Accepted()
	if p := r.Failed(log, "imap", syscall.EMFILE); p != 5*time.Millisecond {
		t.Errorf("pause after an accept %v, want 5ms", p)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 1 {
		t.Errorf("%d log lines for a burst of 11 errors, want 1:\n%s", lines, out.String())
	}
	r.log.logged = time.Now().Add(-2 * logEvery)
	r.Failed(log, "imap", syscall.EMFILE)
	if !strings.Contains(out.String(), "unlogged=10") {
		t.Errorf("the second line does not count the 10 errors in between:\n%s", out.String())
	}
}
