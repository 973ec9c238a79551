package testutil

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// LookPath returns the path of the program name, a client that tests run
// against a proxy (curl, swaks), and skips the test when it is not
// installed. Debian's package for it has the same name.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed: apt-get install %s", name, name)
	}
	return path
}

// Curl runs curl (its path, from LookPath) on url with args, quietly but
// for errors and verbosely (-sS -v) and for ten seconds at most. It fails
// the test, with curl's trace, unless curl exits with wantExit, and
// returns what curl wrote to stdout and its trace: "> " lines for what it
// sent, "< " for what it got.
func Curl(t testing.TB, curl string, wantExit int, url string, args ...string) (stdout, trace string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "-v", "--max-time", "10", url}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	exit := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		exit = exitErr.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if exit != wantExit {
		t.Fatalf("curl exited with %d, want %d\n%s", exit, wantExit, errOut.Bytes())
	}
	return out.String(), errOut.String()
}
