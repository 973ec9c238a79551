package main

import (
	"bufio"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestQuickRound runs every scenario once, briefly, with direct and our
// proxy (nginx is the .ci/run smoke round's), and checks that the table
// has figures for each. It asserts no targets: the figures of a test
// run on a busy machine mean nothing.
func TestQuickRound(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example binary")
	}
	o, err := parseFlags([]string{"-quick", "-contenders", "direct,mailproxy", "-c", "4",
		"-duration", "200ms", "-rounds", "2", "-idle", "100", "-bulk", "1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := run(ctx, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	res.writeTable(&b, o.contenders)
	table := b.String()
	t.Log("\n" + table)
	for _, n := range res.Notes {
		if strings.Contains(n, "failed") || strings.Contains(n, "exit") || strings.Contains(n, "opened") {
			t.Errorf("note: %s", n)
		}
	}
	number := `[0-9][0-9 .]*`
	for _, want := range []string{
		`\| imap c=4 \| sessions/s \(1/s\) \| ` + number + `±\d+% \| ` + number + `±\d+% \|`,
		`\| smtp c=4 \| proxy CPU/session \(µs\) \| – \| ` + number,
		`\| pop3 RETR 1 MiB plain \| throughput \(MiB/s\) \| ` + number + `±\d+% \| ` + number,
		`\| imap TLS resumed c=64 \| handshakes/s \(1/s\) \| ` + number + `±\d+% \| ` + number,
		`\| imap plain, 100 sessions \| sessions held \| – \| 100 \|`,
		`\| imap plain, 100 sessions \| fds/session \| – \| ` + number,
	} {
		if !regexp.MustCompile(want).MatchString(table) {
			t.Errorf("the table has no line matching %s", want)
		}
	}
}

func TestSkipDotTerminated(t *testing.T) {
	for _, tc := range []struct{ name, in, rest string }{
		{"empty body", ".\r\nNEXT", "NEXT"},
		{"one line", "hello\r\n.\r\nNEXT", "NEXT"},
		{"dot-stuffed line", "..x\r\n.\r\n", ""},
		{"long body", strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz\r\n", 50) + ".\r\nQUIT\r\n", "QUIT\r\n"},
	} {
		// A reader as small as bufio allows, so that the terminator
		// straddles its buffers at every offset.
		for pad := range 20 {
			in := strings.Repeat("y", pad) + "\r\n" + tc.in
			if tc.name == "empty body" || tc.name == "dot-stuffed line" {
				in = tc.in
			}
			r := bufio.NewReaderSize(strings.NewReader(in), 16)
			if err := skipDotTerminated(r); err != nil {
				t.Fatalf("%s, pad %d: %v", tc.name, pad, err)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tc.rest {
				t.Errorf("%s, pad %d: left %q, want %q", tc.name, pad, rest, tc.rest)
			}
		}
	}
	if err := skipDotTerminated(bufio.NewReader(strings.NewReader("no end\r\n"))); err != io.EOF {
		t.Errorf("unterminated: %v, want EOF", err)
	}
}

func TestLiteralSize(t *testing.T) {
	for _, tc := range []struct {
		line     string
		n        int
		sync, ok bool
	}{
		{"a LOGIN {4}", 4, true, true},
		{"a LOGIN {4+}", 4, false, true},
		{"a LOGIN user pass", 0, false, false},
		{"a LOGIN {x}", 0, false, false},
		{"a LOGIN {99999999}", 0, false, false},
	} {
		n, sync, ok := literalSize([]byte(tc.line))
		if n != tc.n || sync != tc.sync || ok != tc.ok {
			t.Errorf("%q: %d %v %v, want %d %v %v", tc.line, n, sync, ok, tc.n, tc.sync, tc.ok)
		}
	}
}

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.0461: "0.046", 3.014: "3.01", 41.7: "41.7", 474: "474", 3276.4: "3 276", 1234567: "1 234 567"} {
		if got := formatNumber(v); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestCPUList(t *testing.T) {
	got, err := cpuList("0-2,5")
	if err != nil || formatCPUs(got) != "0,1,2,5" {
		t.Errorf("cpuList: %v %v", got, err)
	}
	if _, err := cpuList("2-1"); err == nil {
		t.Error("cpuList(2-1): no error")
	}
}
