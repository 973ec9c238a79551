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
