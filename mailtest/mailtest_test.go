package mailtest

import (
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

var testUsers = []User{
	{Name: "alice", Password: "secret"},
	{Name: "bob", Password: "pass word"},
}

// quietLogger drops everything, so expected server errors do not clutter the
// test output.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// started takes what a Start function returned: it fails the test on err,
// and otherwise closes s when the test ends, failing the test if Close
// does. Call checkGoroutines before the Start.
func started[S interface{ Close() error }](t *testing.T, s S, err error) S {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// checkGoroutines fails the test if, once every later cleanup (such as the
// Close of a server) has run, more goroutines are left than at the start.
// Call it before starting anything.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
