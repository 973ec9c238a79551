package errorlog

import (
	"context"
	"encoding"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// HandlerOptions are the options of a Handler. The zero value writes
// nginx lines at level error and above, as an error_log without a level.
type HandlerOptions struct {
	// Level is the least severe level written; nil means LevelError,
	// nginx's default.
	Level slog.Leveler
	// Format is Nginx (the zero value) or JSON.
	Format Format
	// Tag, when not empty, writes nginx lines as nginx writes to the
	// terminal while it starts: "tag: [level] message, key: value",
	// without the time and the process id.
	Tag string
}

// Handler is a slog.Handler that writes nginx's error log lines, or JSON
// lines; see the package documentation for the format.
type Handler struct {
	out    lineWriter
	level  slog.Leveler
	format Format
	tag    string
	groups []string // the groups open, outermost first
	attrs  []field  // the attributes given by WithAttrs
}

// field is an attribute, with the number of groups it stands in.
type field struct {
	depth int
	attr  slog.Attr
}

// lineWriter takes the lines of a Handler, with their record's time and
// level: an Output uses them for syslog's header.
type lineWriter interface {
	writeLine(t time.Time, level slog.Level, line []byte) error
}

var _ lineWriter = (*Output)(nil)

// lockedWriter writes the lines to any io.Writer, one at a time.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) writeLine(_ time.Time, _ slog.Level, line []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(line)
	return err
}

// NewHandler returns a Handler that writes to w. Each record is one Write
// of one line, ending with a newline. When w is an *Output, a syslog
// target gets each record's level as its severity.
func NewHandler(w io.Writer, opts *HandlerOptions) *Handler {
	if opts == nil {
		opts = &HandlerOptions{}
	}
	h := &Handler{level: opts.Level, format: opts.Format, tag: opts.Tag}
	if h.level == nil {
		h.level = LevelError
	}
	if o, ok := w.(*Output); ok {
		h.out = o
	} else {
		h.out = &lockedWriter{w: w}
	}
	return h
}

// Enabled reports whether records at level l are written.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs returns a Handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = slices.Clone(h.attrs)
	for _, a := range attrs {
		h2.attrs = addField(h2.attrs, len(h.groups), a)
	}
	return &h2
}

// WithGroup returns a Handler that puts the attributes that follow in the
// group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(slices.Clip(h.groups), name)
	return &h2
}

// Handle writes r as one line.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	var stack [16]field
	fields := append(stack[:0], h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fields = addField(fields, len(h.groups), a)
		return true
	})
	buf := bufPool.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooled {
			*buf = (*buf)[:0]
			bufPool.Put(buf)
		}
	}()
	if h.format == JSON {
		if err := h.appendJSON(buf, r, fields); err != nil {
			return err
		}
	} else {
		*buf = h.appendLine(*buf, r, fields)
	}
	return h.out.writeLine(r.Time, r.Level, *buf)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooled bounds the buffers kept for reuse.
const maxPooled = 16 << 10

// addField adds a to fields at depth, replacing a field with the same key
// at the same depth. It applies slog's rules: values are resolved,
// attributes without a key are dropped, groups without attributes too,
// and a group without a key is inlined.
func addField(fields []field, depth int, a slog.Attr) []field {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		if a.Key == "" {
			for _, g := range a.Value.Group() {
				fields = addField(fields, depth, g)
			}
			return fields
		}
		group := normalize(a.Value.Group())
		if len(group) == 0 {
			return fields
		}
		a.Value = slog.GroupValue(group...)
	}
	if a.Key == "" {
		return fields
	}
	for i := range fields {
		if fields[i].depth == depth && fields[i].attr.Key == a.Key {
			fields[i].attr = a
			return fields
		}
	}
	return append(fields, field{depth, a})
}

// normalize applies addField's rules to the attributes of a group value.
func normalize(attrs []slog.Attr) []slog.Attr {
	var fields []field
	for _, a := range attrs {
		fields = addField(fields, 0, a)
	}
	out := make([]slog.Attr, len(fields))
	for i, f := range fields {
		out[i] = f.attr
	}
	return out
}

// pid is the process id as nginx writes it: "1234#0: ".
var pid = strconv.Itoa(os.Getpid()) + "#0: "

// timeLayout is nginx's error log time.
const timeLayout = "2006/01/02 15:04:05"

// appendLine appends r as an nginx line.
func (h *Handler) appendLine(buf []byte, r slog.Record, fields []field) []byte {
	conn, action := -1, -1
	for i, f := range fields {
		if f.depth != 0 {
			break
		}
		switch k := f.attr.Value.Kind(); {
		case f.attr.Key == ConnKey && (k == slog.KindInt64 || k == slog.KindUint64):
			conn = i
		case f.attr.Key == ActionKey && k == slog.KindString:
			action = i
		}
	}
	if h.tag != "" {
		buf = append(buf, h.tag...)
		buf = append(buf, ": ["...)
	} else {
		if !r.Time.IsZero() {
			buf = r.Time.Local().AppendFormat(buf, timeLayout)
			buf = append(buf, ' ')
		}
		buf = append(buf, '[')
	}
	buf = append(buf, LevelName(r.Level)...)
	buf = append(buf, "] "...)
	if h.tag == "" {
		buf = append(buf, pid...)
	}
	if conn >= 0 {
		buf = append(buf, '*')
		buf = appendValue(buf, fields[conn].attr.Value)
		buf = append(buf, ' ')
	}
	buf = appendEscaped(buf, r.Message)
	if action >= 0 {
		buf = append(buf, " while "...)
		buf = appendEscaped(buf, fields[action].attr.Value.String())
	}
	for i, f := range fields {
		if i == conn || i == action {
			continue
		}
		buf = h.appendField(buf, h.groups[:f.depth], f.attr)
	}
	return append(buf, '\n')
}

// appendField appends ", key: value", the key prefixed with its groups;
// a group value gives one such pair for each of its attributes.
func (h *Handler) appendField(buf []byte, groups []string, a slog.Attr) []byte {
	if a.Value.Kind() == slog.KindGroup {
		inner := append(slices.Clip(groups), a.Key)
		for _, g := range a.Value.Group() {
			buf = h.appendField(buf, inner, g)
		}
		return buf
	}
	buf = append(buf, ", "...)
	for _, g := range groups {
		buf = append(buf, g...)
		buf = append(buf, '.')
	}
	buf = append(buf, a.Key...)
	buf = append(buf, ": "...)
	return appendValue(buf, a.Value)
}

// appendValue appends a value: strings quoted, others as they are unless
// their text needs quotes.
func appendValue(buf []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return strconv.AppendQuote(buf, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(buf, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(buf, v.Uint64(), 10)
	case slog.KindFloat64:
		return strconv.AppendFloat(buf, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(buf, v.Bool())
	case slog.KindDuration:
		return append(buf, v.Duration().String()...)
	case slog.KindTime:
		return v.Time().AppendFormat(buf, time.RFC3339Nano)
	}
	start := len(buf)
	buf = appendAny(buf, v.Any())
	if needsQuotes(buf[start:]) {
		s := string(buf[start:])
		buf = strconv.AppendQuote(buf[:start], s)
	}
	return buf
}

// appendAny appends the text of a value of any other kind: an error's
// message, a TextAppender's or TextMarshaler's text, or fmt's %v.
func appendAny(buf []byte, x any) []byte {
	switch x := x.(type) {
	case error:
		return append(buf, x.Error()...)
	case encoding.TextAppender:
		if b, err := x.AppendText(buf); err == nil {
			return b
		}
	case encoding.TextMarshaler:
		if b, err := x.MarshalText(); err == nil {
			return append(buf, b...)
		}
	}
	return fmt.Append(buf, x)
}

// needsQuotes reports whether text, written as it is, would make the line
// ambiguous or split it.
func needsQuotes(text []byte) bool {
	if len(text) == 0 || !utf8.Valid(text) {
		return true
	}
	for _, c := range text {
		switch {
		case c < 0x20, c == 0x7f, c == '"', c == '\\', c == ',':
			return true
		}
	}
	return false
}

// appendEscaped appends text written outside quotes (the message, the
// action): control characters and invalid UTF-8 are escaped as in Go, so
// that a line stays one line.
func appendEscaped(buf []byte, s string) []byte {
	clean := utf8.ValidString(s)
	for i := 0; clean && i < len(s); i++ {
		clean = s[i] >= 0x20 && s[i] != 0x7f
	}
	if clean {
		return append(buf, s...)
	}
	q := strconv.Quote(s)
	return append(buf, q[1:len(q)-1]...)
}

// appendJSON appends r as a JSON line, through slog's JSONHandler.
func (h *Handler) appendJSON(buf *[]byte, r slog.Record, fields []field) error {
	rec := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	rec.AddAttrs(nest(fields, h.groups, 0)...)
	return slog.NewJSONHandler(sliceWriter{buf}, jsonOptions).Handle(context.Background(), rec)
}

var jsonOptions = &slog.HandlerOptions{
	Level: slog.Level(-1 << 31), // the Handler has decided already
	ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) != 0 || a.Key != slog.LevelKey {
			return a
		}
		if l, ok := a.Value.Any().(slog.Level); ok {
			return slog.String(slog.LevelKey, LevelName(l))
		}
		return a
	},
}

// nest turns the fields from depth on into attributes, those of deeper
// groups inside group values. Fields are in order of depth, as WithGroup
// only ever opens a group inside the last one.
func nest(fields []field, groups []string, depth int) []slog.Attr {
	var out []slog.Attr
	i := 0
	for ; i < len(fields) && fields[i].depth == depth; i++ {
		out = append(out, fields[i].attr)
	}
	if i < len(fields) {
		if inner := nest(fields[i:], groups, depth+1); len(inner) > 0 {
			out = append(out, slog.Attr{Key: groups[depth], Value: slog.GroupValue(inner...)})
		}
	}
	return out
}

// sliceWriter appends what is written to a byte slice.
type sliceWriter struct{ b *[]byte }

func (w sliceWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}
