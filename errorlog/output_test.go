package errorlog_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mailproxy/mailproxy/errorlog"
)

func openLog(t *testing.T, outs *errorlog.Outputs, name string) (*slog.Logger, *errorlog.Output) {
	t.Helper()
	out, err := outs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return slog.New(errorlog.NewHandler(out, &errorlog.HandlerOptions{Level: errorlog.LevelInfo})), out
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logrotate renames the file; after Reopen, lines go to a new file under
// the old name, and the renamed one keeps what came before.
func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "error.log")
	var outs errorlog.Outputs
	log, _ := openLog(t, &outs, name)
	log.Info("before the rotation")
	if err := os.Rename(name, name+".1"); err != nil {
		t.Fatal(err)
	}
	log.Info("renamed, not reopened yet")
	if err := outs.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("after the rotation")
	old, cur := readFile(t, name+".1"), readFile(t, name)
	if !strings.Contains(old, "before the rotation") || !strings.Contains(old, "renamed, not reopened yet") || strings.Contains(old, "after") {
		t.Errorf("the renamed file holds:\n%s", old)
	}
	if strings.Count(cur, "\n") != 1 || !strings.Contains(cur, "after the rotation") {
		t.Errorf("the new file holds:\n%s", cur)
	}
}

// Lines written while files are reopened are all written, whole, to one
// file or the other.
func TestReopenWhileWriting(t *testing.T) {
	name := filepath.Join(t.TempDir(), "error.log")
	var outs errorlog.Outputs
	log, _ := openLog(t, &outs, name)
	const writers, lines = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				log.Info("line", "writer", w, "i", i)
			}
		})
	}
	var rotated []string
	for i := range 20 {
		r := fmt.Sprintf("%s.%d", name, i)
		if err := os.Rename(name, r); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, r)
		if err := outs.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	all := readFile(t, name)
	for _, r := range rotated {
		all += readFile(t, r)
	}
	if n := strings.Count(all, "] "+fmt.Sprint(os.Getpid())+"#0: line, writer: "); n != writers*lines {
		t.Errorf("%d whole lines, want %d", n, writers*lines)
	}
}

// A target named twice is opened once; it is closed with its last use,
// and Reopen leaves closed ones alone.
func TestOutputsShared(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "shared.log")
	var outs errorlog.Outputs
	a, outA := openLog(t, &outs, name)
	b, outB := openLog(t, &outs, name)
	a.Info("from a")
	outA.Close()
	outA.Close() // a second Close changes nothing
	b.Info("from b")
	if got := readFile(t, name); !strings.Contains(got, "from a") || !strings.Contains(got, "from b") {
		t.Fatalf("file holds:\n%s", got)
	}
	outB.Close()
	if err := b.Handler().Handle(t.Context(), slog.NewRecord(when, slog.LevelError, "after the last close", 0)); err == nil {
		t.Error("a write after the last Close succeeded")
	}
	os.Rename(name, name+".1")
	if err := outs.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Errorf("Reopen opened a closed file again: %v", err)
	}
	if outB.String() != name {
		t.Errorf("String() = %q", outB.String())
	}
}

func TestOpenTargets(t *testing.T) {
	var stderr bytes.Buffer
	outs := errorlog.Outputs{Stderr: &stderr}
	log, _ := openLog(t, &outs, "stderr")
	log.Warn("to the terminal")
	if !strings.Contains(stderr.String(), "[warn] ") {
		t.Errorf("stderr holds %q", stderr.String())
	}
	for _, bad := range []string{"", "memory:32m", filepath.Join(t.TempDir(), "no", "such", "dir.log"), "syslog:server=", "syslog:facility=mail"} {
		if out, err := outs.Open(bad); err == nil {
			out.Close()
			t.Errorf("%q opened", bad)
		}
	}
}

// OpenFile opens the files, at Open and at Reopen, as a program that gave
// up its privileges has another process open them; a file it cannot open
// again stays as it was.
func TestOutputsOpenFile(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "error.log")
	var opened []string
	var refuse error
	var stderr bytes.Buffer
	outs := errorlog.Outputs{Stderr: &stderr, OpenFile: func(name string) (*os.File, error) {
		opened = append(opened, name)
		if refuse != nil {
			return nil, refuse
		}
		return errorlog.OpenFile(name)
	}}
	log, _ := openLog(t, &outs, name)
	openLog(t, &outs, "stderr")
	log.Info("first")
	os.Rename(name, name+".1")
	if err := outs.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("second")
	refuse = errors.New("refused by the helper")
	os.Rename(name, name+".2")
	if err := outs.Reopen(); !errors.Is(err, refuse) {
		t.Errorf("Reopen: %v, want the refusal", err)
	}
	log.Info("third")
	if want := []string{name, name, name}; !slices.Equal(opened, want) {
		t.Errorf("OpenFile opened %q, want %q", opened, want)
	}
	for file, want := range map[string]string{name + ".1": "first", name + ".2": "second\n.*third"} {
		if got := readFile(t, file); !regexp.MustCompile(want).MatchString(got) || strings.Count(got, "\n") != strings.Count(want, "\n")+1 {
			t.Errorf("%s holds:\n%s\nwant %s", file, got, want)
		}
	}
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Errorf("a file was opened without OpenFile: %v", err)
	}
}
