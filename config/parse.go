package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits that keep hostile or broken input from exhausting the stack or
// memory.
const (
	maxBlockDepth    = 64       // nested "{ }" blocks, counted across includes
	maxIncludeDepth  = 32       // files included from included files
	maxIncludedFiles = 10000    // files read by includes in one parse
	maxTokenLen      = 1 << 20  // bytes in one decoded token
	maxFileSize      = 16 << 20 // bytes in one configuration file
)

// A Directive is one statement of an nginx-style configuration: a name,
// its arguments, and for block directives the directives inside the braces.
// Include directives never appear in a parsed tree: they are replaced by
// the directives of the files they name.
type Directive struct {
	Name     string       // first token, e.g. "listen"
	Args     []string     // remaining tokens, with quotes and escapes removed
	Block    []*Directive // directives between "{" and "}"
	HasBlock bool         // true if the directive ended with a block, even an empty one
	File     string       // file the directive was read from
	Line     int          // 1-based line of the directive's name
}

// Pos returns the position of d as "file:line", the form every
// configuration error message starts with.
func (d *Directive) Pos() string {
	return d.File + ":" + strconv.Itoa(d.Line)
}

// An Error is a configuration error at a position in a file.
type Error struct {
	File string // file name as given to the parser, or the included path
	Line int    // 1-based line
	Msg  string // what went wrong, e.g. `unexpected "}"`
}

// Error returns "file:line: msg".
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ParseFile reads the configuration file at path and parses it. Include
// patterns are relative to the folder of path.
func ParseFile(path string) ([]*Directive, error) {
	return parseFile(path, SystemFiles)
}

// parseFile reads the configuration file at path, and the files it
// includes, through files.
func parseFile(path string, files Files) ([]*Directive, error) {
	src, err := readLimited(files, path, path, maxFileSize)
	if err != nil {
		return nil, err
	}
	return parseSource(path, src, filepath.Dir(path), fileSource{read: func(path string) ([]byte, error) {
		return readLimited(files, path, path, maxFileSize)
	}, glob: files.Glob})
}

// Parse parses the configuration src. Name is the file name used in
// positions and errors; dir is the folder that include patterns in src are
// relative to. Includes are expanded in place; errors are of type *Error.
func Parse(name string, src []byte, dir string) ([]*Directive, error) {
	return parseSource(name, src, dir, osFiles)
}

// ParseDirectives parses directives given on the command line (nginx's -g
// option). The syntax is that of a configuration file, except that every
// directive must end with ";": blocks and include are not allowed there.
func ParseDirectives(name, src string) ([]*Directive, error) {
	st := &includeState{files: noFiles, param: true}
	p := &parser{lx: newLexer(name, []byte(src)), st: st}
	return p.block(0, false)
}

// parseSource parses a root configuration, reading includes through files.
func parseSource(name string, src []byte, dir string, files fileSource) ([]*Directive, error) {
	st := &includeState{files: files}
	st.stack = append(st.stack, openFile{key: absKey(name), name: name})
	p := &parser{lx: newLexer(name, src), dir: dir, st: st}
	return p.block(0, false)
}

// readBounded reads the file at path, refusing one larger than limit
// bytes; name is the file in that error.
func readBounded(path, name string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("read %s: file larger than %d bytes", name, limit)
	}
	return b, nil
}

// A fileSource reads included files; tests substitute an in-memory one.
type fileSource struct {
	read func(path string) ([]byte, error)
	glob func(pattern string) ([]string, error)
}

var (
	osFiles = fileSource{read: SystemFiles.ReadFile, glob: SystemFiles.Glob}
	noFiles = fileSource{}
)

// absKey names a file for include cycle detection.
func absKey(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// Lexer.

type tokenKind int

const (
	tokWord  tokenKind = iota // a bare or quoted word
	tokSemi                   // ";"
	tokOpen                   // "{"
	tokClose                  // "}"
	tokEOF                    // end of input
)

type token struct {
	kind tokenKind
	text string // decoded word, or the punctuation itself
	line int
}

// A lexer splits configuration source into tokens.
type lexer struct {
	name      string
	src       []byte
	pos       int
	line      int
	needSpace bool // the last token was quoted: a separator must follow
}

func newLexer(name string, src []byte) *lexer {
	return &lexer{name: name, src: src, line: 1}
}

func (lx *lexer) errorf(line int, format string, args ...any) *Error {
	return &Error{File: lx.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// next returns the next token.
func (lx *lexer) next() (token, error) {
	if err := lx.checkSeparator(); err != nil {
		return token{}, err
	}
	lx.skipSpace()
	if lx.pos >= len(lx.src) {
		return token{kind: tokEOF, line: lx.line}, nil
	}
	switch c := lx.src[lx.pos]; c {
	case ';', '{', '}':
		lx.pos++
		return token{kind: punctKind(c), text: string(c), line: lx.line}, nil
	case '"', '\'':
		return lx.quoted(c)
	}
	return lx.word()
}

func punctKind(c byte) tokenKind {
	switch c {
	case ';':
		return tokSemi
	case '{':
		return tokOpen
	}
	return tokClose
}

// checkSeparator enforces that a quoted word is followed by whitespace,
// ";", "{", "}", ")" (as in `if ($a = "b")`) or the end of input.
func (lx *lexer) checkSeparator() error {
	if !lx.needSpace {
		return nil
	}
	lx.needSpace = false
	if lx.pos >= len(lx.src) {
		return nil
	}
	c := lx.src[lx.pos]
	if isSpace(c) || strings.IndexByte(";{})", c) >= 0 {
		return nil
	}
	r, _ := utf8.DecodeRune(lx.src[lx.pos:])
	return lx.errorf(lx.line, "unexpected %s", strconv.Quote(string(r)))
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// skipSpace skips whitespace and comments; a "#" starts a comment only
// where a token could start.
func (lx *lexer) skipSpace() {
	for lx.pos < len(lx.src) {
		switch c := lx.src[lx.pos]; {
		case c == '\n':
			lx.line++
			lx.pos++
		case isSpace(c):
			lx.pos++
		case c == '#':
			lx.skipComment()
		default:
			return
		}
	}
}

func (lx *lexer) skipComment() {
	if i := bytes.IndexByte(lx.src[lx.pos:], '\n'); i >= 0 {
		lx.pos += i
	} else {
		lx.pos = len(lx.src)
	}
}

// word scans a bare word. It ends at whitespace, ";" or "{", except that
// "${" keeps going so that ${var} stays one word; "}" does not end it.
func (lx *lexer) word() (token, error) {
	tok := token{kind: tokWord, line: lx.line}
	var buf []byte
	variable := false
	for lx.pos < len(lx.src) && !lx.endsWord(variable) {
		if len(buf) > maxTokenLen {
			return token{}, lx.tooLong(tok.line)
		}
		c := lx.src[lx.pos]
		if c == '\\' {
			buf = lx.escape(buf)
			variable = false
			continue
		}
		variable = c == '$' || c == '{' && variable
		buf = append(buf, c)
		lx.pos++
	}
	if len(buf) > maxTokenLen {
		return token{}, lx.tooLong(tok.line)
	}
	tok.text = string(buf)
	return tok, nil
}

// endsWord reports whether the byte at lx.pos ends a bare word; variable
// is set just after a "$".
func (lx *lexer) endsWord(variable bool) bool {
	c := lx.src[lx.pos]
	if c == '{' {
		return !variable
	}
	return isSpace(c) || c == ';'
}

// quoted scans a string quoted with q, which may span lines.
func (lx *lexer) quoted(q byte) (token, error) {
	tok := token{kind: tokWord, line: lx.line}
	var buf []byte
	lx.pos++
	for lx.pos < len(lx.src) {
		if len(buf) > maxTokenLen {
			return token{}, lx.tooLong(tok.line)
		}
		c := lx.src[lx.pos]
		switch {
		case c == q:
			lx.pos++
			lx.needSpace = true
			tok.text = string(buf)
			return tok, nil
		case c == '\\':
			buf = lx.escape(buf)
		default:
			if c == '\n' {
				lx.line++
			}
			buf = append(buf, c)
			lx.pos++
		}
	}
	return token{}, lx.errorf(tok.line, "unexpected end of file in quoted string")
}

// escape decodes the backslash sequence at lx.pos and appends it to buf.
// \" \' \\ give the character, \n \r \t the control character; any other
// pair is kept as both characters. A final lone backslash is kept as is.
func (lx *lexer) escape(buf []byte) []byte {
	if lx.pos+1 >= len(lx.src) {
		lx.pos++
		return append(buf, '\\')
	}
	c := lx.src[lx.pos+1]
	lx.pos += 2
	switch c {
	case '"', '\'', '\\':
		return append(buf, c)
	case 'n':
		return append(buf, '\n')
	case 'r':
		return append(buf, '\r')
	case 't':
		return append(buf, '\t')
	case '\n':
		lx.line++
	}
	return append(buf, '\\', c)
}

func (lx *lexer) tooLong(line int) *Error {
	return lx.errorf(line, "token longer than %d bytes", maxTokenLen)
}

// Parser.

// An openFile is a file being parsed, for include cycle detection.
type openFile struct {
	key  string // absolute path
	name string // path as shown in messages
}

// includeState is shared by the parsers of a root file and its includes.
type includeState struct {
	files fileSource
	stack []openFile // root first
	count int        // files read by includes so far
	param bool       // parsing -g directives
}

// A parser builds directives from the tokens of one file.
type parser struct {
	lx  *lexer
	dir string // folder include patterns are relative to
	st  *includeState
}

// block parses directives until the end of input or, if inBlock, the
// closing "}". Depth is the number of enclosing blocks.
func (p *parser) block(depth int, inBlock bool) ([]*Directive, error) {
	var out []*Directive
	for {
		tok, err := p.lx.next()
		if err != nil {
			return nil, err
		}
		switch tok.kind {
		case tokEOF:
			if inBlock {
				return nil, p.lx.errorf(tok.line, `unexpected end of file, expecting "}"`)
			}
			return out, nil
		case tokClose:
			if !inBlock {
				return nil, p.lx.errorf(tok.line, `unexpected "}"`)
			}
			return out, nil
		case tokSemi, tokOpen:
			return nil, p.lx.errorf(tok.line, "unexpected %s", strconv.Quote(tok.text))
		}
		if out, err = p.directive(out, tok, depth); err != nil {
			return nil, err
		}
	}
}

// directive parses the rest of the directive named by tok and appends it,
// or the directives it includes, to out.
func (p *parser) directive(out []*Directive, tok token, depth int) ([]*Directive, error) {
	d := &Directive{Name: tok.text, File: p.lx.name, Line: tok.line}
	if err := p.rest(d, depth); err != nil {
		return nil, err
	}
	if d.Name != "include" {
		return append(out, d), nil
	}
	inc, err := p.include(d, depth)
	if err != nil {
		return nil, err
	}
	return append(out, inc...), nil
}

// rest reads the arguments of d and its terminating ";" or block.
func (p *parser) rest(d *Directive, depth int) error {
	for {
		tok, err := p.lx.next()
		if err != nil {
			return err
		}
		switch tok.kind {
		case tokWord:
			d.Args = append(d.Args, tok.text)
		case tokSemi:
			return nil
		case tokOpen:
			return p.subBlock(d, tok, depth)
		case tokClose:
			return p.lx.errorf(tok.line, `unexpected "}"`)
		case tokEOF:
			return p.unexpectedEOF(tok.line)
		}
	}
}

func (p *parser) unexpectedEOF(line int) error {
	if p.st.param {
		return p.lx.errorf(line, `unexpected end of parameter, expecting ";"`)
	}
	return p.lx.errorf(line, `unexpected end of file, expecting ";" or "}"`)
}

// subBlock parses the block of d, whose "{" is tok.
func (p *parser) subBlock(d *Directive, tok token, depth int) error {
	if p.st.param {
		return p.lx.errorf(tok.line, "block directives are not supported in -g option")
	}
	if depth >= maxBlockDepth {
		return p.lx.errorf(tok.line, "blocks nested deeper than %d levels", maxBlockDepth)
	}
	block, err := p.block(depth+1, true)
	if err != nil {
		return err
	}
	d.Block, d.HasBlock = block, true
	return nil
}

// Includes.

func (p *parser) errorAt(d *Directive, format string, args ...any) *Error {
	return &Error{File: d.File, Line: d.Line, Msg: fmt.Sprintf(format, args...)}
}

// include returns the directives of the files that d includes.
func (p *parser) include(d *Directive, depth int) ([]*Directive, error) {
	switch {
	case p.st.param:
		return nil, p.errorAt(d, `"include" directive is not supported in -g option`)
	case d.HasBlock:
		return nil, p.errorAt(d, `directive "include" is not terminated by ";"`)
	case len(d.Args) != 1:
		return nil, p.errorAt(d, `invalid number of arguments in "include" directive`)
	}
	paths, err := p.expand(d)
	if err != nil {
		return nil, err
	}
	var out []*Directive
	for _, path := range paths {
		ds, err := p.includeFile(d, path, depth)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

// expand turns the pattern of include d into file paths. A pattern without
// glob characters names one file, which must exist; a glob may match none.
func (p *parser) expand(d *Directive) ([]string, error) {
	pattern := d.Args[0]
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(p.dir, pattern)
	}
	if !strings.ContainsAny(pattern, "*?[") {
		return []string{pattern}, nil
	}
	paths, err := p.st.files.glob(pattern)
	if err != nil {
		return nil, p.errorAt(d, "include %s: %v", strconv.Quote(d.Args[0]), err)
	}
	slices.Sort(paths)
	return paths, nil
}

// includeFile parses the file at path, included by d inside depth blocks.
func (p *parser) includeFile(d *Directive, path string, depth int) ([]*Directive, error) {
	if err := p.checkInclude(d, path); err != nil {
		return nil, err
	}
	src, err := p.st.files.read(path)
	if err != nil {
		return nil, p.errorAt(d, "%v", err)
	}
	p.st.stack = append(p.st.stack, openFile{key: absKey(path), name: path})
	defer func() { p.st.stack = p.st.stack[:len(p.st.stack)-1] }()
	child := &parser{lx: newLexer(path, src), dir: filepath.Dir(path), st: p.st}
	return child.block(depth, false)
}

// checkInclude refuses include cycles, deep include chains and too many
// included files.
func (p *parser) checkInclude(d *Directive, path string) error {
	key := absKey(path)
	for i, f := range p.st.stack {
		if f.key == key {
			return p.errorAt(d, "include cycle: %s", p.cycle(i, path))
		}
	}
	if len(p.st.stack) > maxIncludeDepth {
		return p.errorAt(d, "includes nested deeper than %d levels", maxIncludeDepth)
	}
	if p.st.count++; p.st.count > maxIncludedFiles {
		return p.errorAt(d, "more than %d included files", maxIncludedFiles)
	}
	return nil
}

// cycle describes the include chain from stack[i] back to path.
func (p *parser) cycle(i int, path string) string {
	var names []string
	for _, f := range p.st.stack[i:] {
		names = append(names, f.name)
	}
	return strings.Join(append(names, path), " -> ")
}
