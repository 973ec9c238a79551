package imap

// RFC 2971 bounds on ID parameters.
const (
	maxIDPairs    = 30
	maxIDFieldLen = 30
	maxIDValueLen = 1024
)

// identify answers ID: "ID NIL" or "ID (field value …)". The client's
// parameters are kept for the backend.
func (cl *client) identify(tag string, args []token) bool {
	params, ok := idParams(args)
	if !ok {
		return cl.c.Fail(tag + " BAD invalid ID arguments")
	}
	cl.id = params
	cl.c.Reply(`* ID ("name" "mailproxy")`)
	cl.c.Reply("%s OK ID completed", tag)
	return true
}

// idParam is one field of an ID command.
type idParam struct {
	field, value string
	nilValue     bool
}

// idParams reads ID's argument: NIL, or a list of field and value pairs.
func idParams(args []token) ([]idParam, bool) {
	if len(args) == 1 && args[0].kind == atomToken && isNIL(args[0].value) {
		return nil, true
	}
	if len(args) < 2 || args[0].kind != openToken || args[len(args)-1].kind != closeToken {
		return nil, false
	}
	inner := args[1 : len(args)-1]
	if len(inner)%2 != 0 || len(inner) > 2*maxIDPairs {
		return nil, false
	}
	params := make([]idParam, 0, len(inner)/2)
	for i := 0; i < len(inner); i += 2 {
		f, v := inner[i], inner[i+1]
		if f.kind != stringToken || len(f.value) > maxIDFieldLen {
			return nil, false
		}
		p := idParam{field: f.value, value: v.value}
		switch {
		case v.kind == atomToken && isNIL(v.value):
			p.value, p.nilValue = "", true
		case v.kind != stringToken || len(v.value) > maxIDValueLen:
			return nil, false
		}
		params = append(params, p)
	}
	return params, true
}

func isNIL(s string) bool {
	return len(s) == 3 && (s[0]|0x20) == 'n' && (s[1]|0x20) == 'i' && (s[2]|0x20) == 'l'
}
