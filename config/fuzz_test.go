package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fuzzFiles is the in-memory tree that fuzzed includes resolve against, so
// that fuzzing never reads the real file system.
var fuzzFiles = map[string]string{
	"/fuzz/a.conf":        "a 1;\ninclude b.conf;",
	"/fuzz/b.conf":        "b {\n  c 'x y';\n}",
	"/fuzz/self.conf":     "include self.conf;",
	"/fuzz/bad.conf":      "x;\n}",
	"/fuzz/open.conf":     "x {",
	"/fuzz/conf.d/1.conf": "server { listen 143; }",
	"/fuzz/conf.d/2.conf": "include ../a.conf;",
}

var fuzzSource = fileSource{
	read: func(path string) ([]byte, error) {
		if s, ok := fuzzFiles[filepath.Clean(path)]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	},
	glob: func(pattern string) ([]string, error) {
		if _, err := filepath.Match(pattern, ""); err != nil {
			return nil, err
		}
		var out []string
		for name := range fuzzFiles {
			if ok, _ := filepath.Match(pattern, name); ok {
				out = append(out, name)
			}
		}
		return out, nil
	},
}

// printConfig writes directives back in configuration syntax, quoting
// every name and argument.
func printConfig(b *strings.Builder, ds []*Directive, indent string) {
	for _, d := range ds {
		b.WriteString(indent + quoteToken(d.Name))
		for _, a := range d.Args {
			b.WriteString(" " + quoteToken(a))
		}
		if !d.HasBlock {
			b.WriteString(";\n")
			continue
		}
		b.WriteString(" {\n")
		printConfig(b, d.Block, indent+"\t")
		b.WriteString(indent + "}\n")
	}
}

var tokenQuoter = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func quoteToken(s string) string {
	return `"` + tokenQuoter.Replace(s) + `"`
}

// sameShape reports whether a and b have the same names, arguments and
// blocks, ignoring positions.
func sameShape(a, b []*Directive) bool {
	return slices.EqualFunc(a, b, func(x, y *Directive) bool {
		return x.Name == y.Name && slices.Equal(x.Args, y.Args) &&
			x.HasBlock == y.HasBlock && sameShape(x.Block, y.Block)
	})
}

// checkTree checks that every directive has a position.
func checkTree(t *testing.T, ds []*Directive) {
	t.Helper()
	for _, d := range ds {
		if d.File == "" || d.Line < 1 {
			t.Fatalf("directive %q has position %q", d.Name, d.Pos())
		}
		if d.Name == "include" {
			t.Fatalf("include directive left in tree at %s", d.Pos())
		}
		if !d.HasBlock && d.Block != nil {
			t.Fatalf("directive %q at %s has a block but no HasBlock", d.Name, d.Pos())
		}
		checkTree(t, d.Block)
	}
}

// checkParseError checks that err is an *Error with a line.
func checkParseError(t *testing.T, ds []*Directive, err error) {
	t.Helper()
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	if perr.Line < 1 || perr.File == "" {
		t.Fatalf("error without position: %v", err)
	}
	if ds != nil {
		t.Fatalf("directives returned with error %v", err)
	}
}

// roundTrip checks that printing ds and parsing the result again gives the
// same tree.
func roundTrip(t *testing.T, ds []*Directive) {
	t.Helper()
	var b strings.Builder
	printConfig(&b, ds, "")
	again, err := parseSource("printed.conf", []byte(b.String()), "/fuzz", fuzzSource)
	if err != nil {
		t.Fatalf("reparse: %v\nprinted:\n%s", err, b.String())
	}
	if !sameShape(ds, again) {
		t.Fatalf("round trip changed the tree\nfirst:  %s\nsecond: %s", dumpTree(ds), dumpTree(again))
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"worker_processes 1;\nevents { worker_connections 512; }\n",
		"mail {\n  server {\n    listen 993 ssl;\n    protocol imap;\n  }\n}\n",
		`smtp_capabilities "SIZE 10485760" 'AUTH=LOGIN PLAIN' 8BITMIME;`,
		`a "\"\'\\\n\r\t\x" '#not a comment' b\;c # comment` + "\n;",
		"set $x ${y}z; if ($a = \"b\") { return 403; }",
		"a 1;\r\nb {\r\n c;\r\n}\r\n",
		"include a.conf; http { include conf.d/*.conf; } include none/*.conf;",
		"include self.conf;",
		"include missing.conf;",
		"include bad.conf;",
		"include [;",
		"a {",
		"a \"b",
		"}",
		";",
		`a "b"c;`,
		"a { b { c { d { } } } }",
		"server_name почта.example \"✉\";",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		ds, err := parseSource("fuzz.conf", []byte(src), "/fuzz", fuzzSource)
		if err != nil {
			checkParseError(t, ds, err)
		} else {
			checkTree(t, ds)
			roundTrip(t, ds)
		}
		if ds, err := ParseDirectives("-g", src); err != nil {
			checkParseError(t, ds, err)
		} else {
			checkTree(t, ds)
		}
	})
}

func TestRoundTripFullConfig(t *testing.T) {
	ds, err := ParseFile(filepath.Join("testdata", "nginx-full.conf"))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ds)
}
