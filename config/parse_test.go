package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// dumpTree renders directives compactly for comparison:
// `line:name "arg"...;` or `line:name "arg"... { ... }`.
func dumpTree(ds []*Directive) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%s", d.Line, d.Name)
		for _, a := range d.Args {
			b.WriteString(" " + strconv.Quote(a))
		}
		switch {
		case d.HasBlock && len(d.Block) == 0:
			b.WriteString(" {}")
		case d.HasBlock:
			b.WriteString(" { " + dumpTree(d.Block) + " }")
		default:
			b.WriteByte(';')
		}
	}
	return b.String()
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", ""},
		{"only space and comments", "  \n\t# comment\n   # another\n", ""},
		{"simple", "worker_processes 1;", `1:worker_processes "1";`},
		{"no args", "daemon;", `1:daemon;`},
		{"several on a line", "a 1; b 2 3;c;", `1:a "1"; 1:b "2" "3"; 1:c;`},
		{"spans lines", "a\n  1\n  2\n;\nb;", `1:a "1" "2"; 5:b;`},
		{"tabs", "a\t1\t;", `1:a "1";`},
		{"empty block", "events {}", `1:events {}`},
		{"block with args", "location / { root /srv; }", `1:location "/" { 1:root "/srv"; }`},
		{"block without spaces", "server{listen 25;}", `1:server { 1:listen "25"; }`},
		{"nested blocks", "http {\n  server {\n    location / {\n      a;\n    }\n  }\n  b;\n}\nc;",
			`1:http { 2:server { 3:location "/" { 4:a; } } 7:b; } 9:c;`},
		{"comments", "# head\na 1; # tail\nb x#y; # z {\nc;", `2:a "1"; 3:b "x#y"; 4:c;`},
		{"comment at end without newline", "a; # end", `1:a;`},
		{"hash in double quotes", `a "x # y";`, `1:a "x # y";`},
		{"hash in single quotes", `a '# y';`, `1:a "# y";`},
		{"double quoted", `a "b c" "";`, `1:a "b c" "";`},
		{"single quoted", `a 'b c' '';`, `1:a "b c" "";`},
		{"other quote inside", `a "it's" 'say "hi"';`, `1:a "it's" "say \"hi\"";`},
		{"escapes in double quotes", `a "\"" "\'" "\\" "\n" "\r" "\t" "\x" "\$";`,
			`1:a "\"" "'" "\\" "\n" "\r" "\t" "\\x" "\\$";`},
		{"escapes in single quotes", `a '\"' '\'' '\\' '\n' '\r' '\t' '\q';`,
			`1:a "\"" "'" "\\" "\n" "\r" "\t" "\\q";`},
		{"escapes in bare words", `a b\"c d\\e f\tg h\;i j\ k;`,
			`1:a "b\"c" "d\\e" "f\tg" "h\\;i" "j\\ k";`},
		{"escaped newline in bare word", "a b\\\nc;\nd;", `1:a "b\\\nc"; 3:d;`},
		{"quoted string over lines", "a \"x\ny\nz\";\nb;", `1:a "x\ny\nz"; 4:b;`},
		{"quote then semicolon", `a "b";`, `1:a "b";`},
		{"quote then brace", `a "b"{}`, `1:a "b" {}`},
		{"quote then paren", `if ($a = "b") { return 403; }`,
			`1:if "($a" "=" "b" ")" { 1:return "403"; }`},
		{"quote then newline", "a \"b\"\n'c'\t\"d\";", `1:a "b" "c" "d";`},
		{"quote inside bare word", `a b"c" d'e;`, `1:a "b\"c\"" "d'e";`},
		{"quoted name", `"a b" c;`, `1:a b "c";`},
		{"variables", `set $x ${y}z; a ${b} $c ${d}e;`, `1:set "$x" "${y}z"; 1:a "${b}" "$c" "${d}e";`},
		{"variable then block", `a $b {}`, `1:a "$b" {}`},
		{"closing brace in bare word", `a b}c d};`, `1:a "b}c" "d}";`},
		{"unicode", "server_name почта.example 例え.jp \"✉ mail\";", `1:server_name "почта.example" "例え.jp" "✉ mail";`},
		{"crlf", "a 1;\r\nb {\r\n  c 2;\r\n}\r\n# x\r\nd;\r\n", `1:a "1"; 2:b { 3:c "2"; } 6:d;`},
		{"crlf in quotes", "a \"x\r\ny\";\r\nb;", `1:a "x\r\ny"; 3:b;`},
		{"deep nesting at limit", strings.Repeat("a {", maxBlockDepth) + strings.Repeat("}", maxBlockDepth),
			strings.Repeat(`1:a { `, maxBlockDepth-1) + `1:a {}` + strings.Repeat(` }`, maxBlockDepth-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds, err := Parse("t.conf", []byte(tt.src), "")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := dumpTree(ds); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseLongToken(t *testing.T) {
	long := strings.Repeat("x", maxTokenLen)
	for _, src := range []string{"a " + long + ";", `a "` + long + `";`, "a '" + long + "';"} {
		ds, err := Parse("t.conf", []byte(src), "")
		if err != nil {
			t.Fatalf("Parse(%.10q...): %v", src, err)
		}
		if len(ds) != 1 || len(ds[0].Args) != 1 || ds[0].Args[0] != long {
			t.Errorf("Parse(%.10q...): wrong tree", src)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tooLong := `token longer than 1048576 bytes`
	long := strings.Repeat("x", maxTokenLen+1)
	tests := []struct {
		name, src, want string
	}{
		{"close at top", "}", `t.conf:1: unexpected "}"`},
		{"close after block", "a {}\n}", `t.conf:2: unexpected "}"`},
		{"close after args", "a {\n  b c }", `t.conf:2: unexpected "}"`},
		{"close after quoted arg", `a "b"}`, `t.conf:1: unexpected "}"`},
		{"semicolon alone", ";", `t.conf:1: unexpected ";"`},
		{"semicolon in block", "a {\n ;\n}", `t.conf:2: unexpected ";"`},
		{"brace alone", "\n{}", `t.conf:2: unexpected "{"`},
		{"eof in block", "a {", `t.conf:1: unexpected end of file, expecting "}"`},
		{"eof in block after newline", "a {\n  b;\n", `t.conf:3: unexpected end of file, expecting "}"`},
		{"eof in nested block", "a { b { c; }", `t.conf:1: unexpected end of file, expecting "}"`},
		{"eof after name", "a", `t.conf:1: unexpected end of file, expecting ";" or "}"`},
		{"eof after args", "a b\n", `t.conf:2: unexpected end of file, expecting ";" or "}"`},
		{"eof after brace in word", "listen 25}", `t.conf:1: unexpected end of file, expecting ";" or "}"`},
		{"eof after lone backslash", `a b\`, `t.conf:1: unexpected end of file, expecting ";" or "}"`},
		{"eof after quoted arg", `a "b"`, `t.conf:1: unexpected end of file, expecting ";" or "}"`},
		{"unterminated double quote", "a;\nb \"c\nd;\n", `t.conf:2: unexpected end of file in quoted string`},
		{"unterminated quoted name", "a;\n\"b", `t.conf:2: unexpected end of file in quoted string`},
		{"long name at end of file", long, "t.conf:1: " + tooLong},
		{"unterminated single quote", "a 'c", `t.conf:1: unexpected end of file in quoted string`},
		{"escaped closing quote", `a "b\";`, `t.conf:1: unexpected end of file in quoted string`},
		{"quote then letter", `a "b"c;`, `t.conf:1: unexpected "c"`},
		{"quote then quote", `a "b"'c';`, `t.conf:1: unexpected "'"`},
		{"quote then hash", `a "b"#c;`, `t.conf:1: unexpected "#"`},
		{"quote then backslash", `a 'b'\n;`, `t.conf:1: unexpected "\\"`},
		{"quote then unicode", "a\n\"b\"é;", `t.conf:2: unexpected "é"`},
		{"too deep", strings.Repeat("a {\n", maxBlockDepth+1), `t.conf:65: blocks nested deeper than 64 levels`},
		{"long bare word in the middle", "a " + long + "yz;", "t.conf:1: " + tooLong},
		{"long bare word", "a\n" + long + ";", "t.conf:2: " + tooLong},
		{"long double quoted", `a "` + long + `";`, "t.conf:1: " + tooLong},
		{"long single quoted", `a '` + long + `';`, "t.conf:1: " + tooLong},
		{"long escaped", "a " + strings.Repeat(`\n`, maxTokenLen+1) + ";", "t.conf:1: " + tooLong},
		{"include without args", "\ninclude;", `t.conf:2: invalid number of arguments in "include" directive`},
		{"include two args", "include a b;", `t.conf:1: invalid number of arguments in "include" directive`},
		{"include with block", "include a {}", `t.conf:1: directive "include" is not terminated by ";"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds, err := Parse("t.conf", []byte(tt.src), t.TempDir())
			checkError(t, ds, err, tt.want)
		})
	}
}

// checkError checks that a parse failed with an *Error reading want.
func checkError(t *testing.T, ds []*Directive, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, got %s", dumpTree(ds))
	}
	if ds != nil {
		t.Errorf("directives returned with error %v", err)
	}
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	if got := err.Error(); got != want {
		t.Errorf("error\ngot  %s\nwant %s", got, want)
	}
}

func TestParseDirectives(t *testing.T) {
	tests := []struct {
		name, src, want, err string
	}{
		{"empty", "", "", ""},
		{"two", "daemon off; worker_processes 2;", `1:daemon "off"; 1:worker_processes "2";`, ""},
		{"quoted", `error_log "/var/log/a b.log" warn;`, `1:error_log "/var/log/a b.log" "warn";`, ""},
		{"missing semicolon", "daemon off", "", `-g:1: unexpected end of parameter, expecting ";"`},
		{"block", "events { }", "", `-g:1: block directives are not supported in -g option`},
		{"include", "a; include /etc/passwd;", "", `-g:1: "include" directive is not supported in -g option`},
		{"close", "}", "", `-g:1: unexpected "}"`},
		{"semicolon", "a;;", "", `-g:1: unexpected ";"`},
		{"unterminated quote", `pid "x;`, "", `-g:1: unexpected end of file in quoted string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds, err := ParseDirectives("-g", tt.src)
			if tt.err != "" {
				checkError(t, ds, err, tt.err)
				return
			}
			if err != nil {
				t.Fatalf("ParseDirectives: %v", err)
			}
			if got := dumpTree(ds); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestErrorAndPos(t *testing.T) {
	e := &Error{File: "/etc/nginx/nginx.conf", Line: 12, Msg: `unexpected "}"`}
	if got, want := e.Error(), `/etc/nginx/nginx.conf:12: unexpected "}"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	d := &Directive{Name: "listen", File: "mail.conf", Line: 7}
	if got, want := d.Pos(), "mail.conf:7"; got != want {
		t.Errorf("Pos() = %q, want %q", got, want)
	}
}

// writeTree creates files (slash-separated path -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// dumpFiles renders directives like dumpTree but with file:line
// positions relative to dir.
func dumpFiles(t *testing.T, dir string, ds []*Directive) string {
	t.Helper()
	var parts []string
	for _, d := range ds {
		rel, err := filepath.Rel(dir, d.File)
		if err != nil {
			t.Fatal(err)
		}
		s := filepath.ToSlash(rel) + ":" + strconv.Itoa(d.Line) + ":" + d.Name
		for _, a := range d.Args {
			s += " " + a
		}
		if d.HasBlock {
			s += " {" + dumpFiles(t, dir, d.Block) + "}"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func TestInclude(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"relative to including file", map[string]string{
			"main.conf":    "a;\ninclude sub/one.conf;\nz;",
			"sub/one.conf": "\none;\ninclude two.conf;",
			"sub/two.conf": "two;",
			"two.conf":     "wrong folder;",
		}, "main.conf:1:a; sub/one.conf:2:one; sub/two.conf:1:two; main.conf:3:z"},
		{"glob sorted", map[string]string{
			"main.conf":       "include conf.d/*.conf;",
			"conf.d/b.conf":   "b;",
			"conf.d/a.conf":   "a;",
			"conf.d/c.conf":   "c;",
			"conf.d/skip.txt": "skip;",
		}, "conf.d/a.conf:1:a; conf.d/b.conf:1:b; conf.d/c.conf:1:c"},
		{"glob over folders", map[string]string{
			"main.conf":        "include sites/*/[a-z]?.conf;",
			"sites/y/ab.conf":  "yab;",
			"sites/x/cd.conf":  "xcd;",
			"sites/x/ab.conf":  "xab;",
			"sites/x/abc.conf": "no;",
		}, "sites/x/ab.conf:1:xab; sites/x/cd.conf:1:xcd; sites/y/ab.conf:1:yab"},
		{"glob matching nothing", map[string]string{
			"main.conf": "a;\ninclude conf.d/*.conf;\nb;",
		}, "main.conf:1:a; main.conf:3:b"},
		{"inside blocks", map[string]string{
			"main.conf":      "mail {\n  include mail/*.conf;\n  x;\n}\nhttp { include mime.types; }",
			"mail/imap.conf": "server {\n  listen 143;\n  include proto.inc;\n}",
			"mail/proto.inc": "protocol imap;",
			"mime.types":     "types { text/html html; }",
		}, "main.conf:1:mail {mail/imap.conf:1:server {mail/imap.conf:2:listen 143; mail/proto.inc:1:protocol imap}; main.conf:3:x}; " +
			"main.conf:5:http {mime.types:1:types {mime.types:1:text/html html}}"},
		{"same file twice", map[string]string{
			"main.conf": "include x.conf;\ninclude x.conf;",
			"x.conf":    "x;",
		}, "x.conf:1:x; x.conf:1:x"},
		{"quoted include name", map[string]string{
			"main.conf": `"include" 'a b.conf';`,
			"a b.conf":  "ab;",
		}, "a b.conf:1:ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			ds, err := ParseFile(filepath.Join(dir, "main.conf"))
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			if got := dumpFiles(t, dir, ds); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestIncludeAbsolute(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	writeTree(t, other, map[string]string{"abs.conf": "abs;"})
	src := "include " + filepath.Join(other, "abs.conf") + ";"
	ds, err := Parse("main.conf", []byte(src), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Name != "abs" || ds[0].File != filepath.Join(other, "abs.conf") {
		t.Errorf("got %s", dumpTree(ds))
	}
}

// includeChain returns files where main.conf includes f1.conf, which
// includes f2.conf, and so on up to fn.conf.
func includeChain(n int) map[string]string {
	files := map[string]string{"main.conf": "include f1.conf;"}
	for i := 1; i < n; i++ {
		files[fmt.Sprintf("f%d.conf", i)] = fmt.Sprintf("include f%d.conf;", i+1)
	}
	files[fmt.Sprintf("f%d.conf", n)] = "end;"
	return files
}

func TestIncludeErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // with {dir} for the folder
	}{
		{"missing file", map[string]string{"main.conf": "a;\ninclude missing.conf;"},
			"{dir}/main.conf:2: open {dir}/missing.conf: no such file or directory"},
		{"folder", map[string]string{"main.conf": "include sub;", "sub/x.conf": "x;"},
			"{dir}/main.conf:1: read {dir}/sub: is a directory"},
		{"bad glob", map[string]string{"main.conf": "include conf.d/[a-;"},
			`{dir}/main.conf:1: include "conf.d/[a-": syntax error in pattern`},
		{"error in included file", map[string]string{
			"main.conf": "http {\n  include inc.conf;\n}",
			"inc.conf":  "a;\n}\n",
		}, `{dir}/inc.conf:2: unexpected "}"`},
		{"block left open in included file", map[string]string{
			"main.conf": "http {\n  include inc.conf;\n}",
			"inc.conf":  "server {\n",
		}, `{dir}/inc.conf:2: unexpected end of file, expecting "}"`},
		{"self include", map[string]string{"main.conf": "a;\ninclude main.conf;"},
			"{dir}/main.conf:2: include cycle: {dir}/main.conf -> {dir}/main.conf"},
		{"cycle", map[string]string{
			"main.conf":     "include conf.d/*.conf;",
			"conf.d/a.conf": "a;",
			"conf.d/b.conf": "\ninclude ../c.conf;",
			"c.conf":        "events {\n  include conf.d/b.conf;\n}",
		}, "{dir}/c.conf:2: include cycle: {dir}/conf.d/b.conf -> {dir}/c.conf -> {dir}/conf.d/b.conf"},
		{"too deep", includeChain(maxIncludeDepth + 1),
			"{dir}/f32.conf:1: includes nested deeper than 32 levels"},
		{"blocks deep across files", map[string]string{
			"main.conf": strings.Repeat("a {", maxBlockDepth-1) + "include inc.conf;" + strings.Repeat("}", maxBlockDepth-1),
			"inc.conf":  "ok {}\n b { c {} }",
		}, "{dir}/inc.conf:2: blocks nested deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			ds, err := ParseFile(filepath.Join(dir, "main.conf"))
			checkError(t, ds, err, strings.ReplaceAll(tt.want, "{dir}", dir))
		})
	}
}

func TestIncludeDepthLimit(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, includeChain(maxIncludeDepth))
	ds, err := ParseFile(filepath.Join(dir, "main.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Name != "end" {
		t.Errorf("got %s", dumpTree(ds))
	}
}

func TestIncludeTooManyFiles(t *testing.T) {
	// Each file includes the next one twice: 2^14 reads in all.
	dir := t.TempDir()
	files := map[string]string{"main.conf": "include f1.conf;"}
	for i := 1; i < 14; i++ {
		files[fmt.Sprintf("f%d.conf", i)] = fmt.Sprintf("include f%d.conf;\ninclude f%[1]d.conf;", i+1)
	}
	files["f14.conf"] = "x;"
	writeTree(t, dir, files)
	_, err := ParseFile(filepath.Join(dir, "main.conf"))
	var perr *Error
	if !errors.As(err, &perr) || perr.Msg != "more than 10000 included files" {
		t.Errorf("got %v, want too many included files", err)
	}
}

func TestIncludeLargeFile(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.conf")
	if err := os.WriteFile(big, make([]byte, maxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	ds, err := Parse("main.conf", []byte("include big.conf;"), dir)
	checkError(t, ds, err, "main.conf:1: read "+big+": file larger than 16777216 bytes")
	if _, err := ParseFile(big); err == nil || !strings.Contains(err.Error(), "file larger than") {
		t.Errorf("ParseFile(big) = %v, want size error", err)
	}
}

func TestParseFileMissing(t *testing.T) {
	_, err := ParseFile(filepath.Join(t.TempDir(), "nginx.conf"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want fs.ErrNotExist", err)
	}
}

// findAll returns the directives named name in ds.
func findAll(ds []*Directive, name string) []*Directive {
	var out []*Directive
	for _, d := range ds {
		if d.Name == name {
			out = append(out, d)
		}
	}
	return out
}

func TestParseFullConfig(t *testing.T) {
	path := filepath.Join("testdata", "nginx-full.conf")
	ds, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var top []string
	for _, d := range ds {
		top = append(top, d.Name+"@"+strconv.Itoa(d.Line))
	}
	want := "user@4 worker_processes@5 worker_rlimit_nofile@6 error_log@8 pid@9 events@11 http@16 stream@62 mail@73"
	if got := strings.Join(top, " "); got != want {
		t.Errorf("top level\ngot  %s\nwant %s", got, want)
	}
	t.Run("mail servers", func(t *testing.T) {
		mail := findAll(ds, "mail")[0]
		var got []string
		for _, s := range findAll(mail.Block, "server") {
			listen := findAll(s.Block, "listen")[0]
			proto := findAll(s.Block, "protocol")[0]
			got = append(got, fmt.Sprintf("%s %s %v", s.Pos(), proto.Args[0], listen.Args))
		}
		want := []string{
			path + ":87 imap [143]",
			path + ":94 imap [993]",
			path + ":99 pop3 [110]",
			path + ":105 smtp [25]",
			path + ":113 smtp [587]",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		caps := findAll(mail.Block, "smtp_capabilities")[0]
		if got := fmt.Sprintf("%q", caps.Args); got != `["SIZE 10485760" "ENHANCEDSTATUSCODES" "8BITMIME" "DSN"]` {
			t.Errorf("smtp_capabilities args %s", got)
		}
	})
	t.Run("include in http", func(t *testing.T) {
		http := findAll(ds, "http")[0]
		types := findAll(http.Block, "types")
		if len(types) != 1 || types[0].Pos() != filepath.Join("testdata", "mime.types")+":2" {
			t.Fatalf("types block not included from mime.types: %s", dumpTree(http.Block))
		}
		if http.Block[0] != types[0] {
			t.Errorf("included block not in place of the include")
		}
	})
}
