package imap

// authenticate runs "AUTHENTICATE mechanism [initial-response]" (RFC 9051,
// 4959).
func (cl *client) authenticate(tag string, args []token) bool {
	if len(args) < 1 || len(args) > 2 || args[0].kind != atomToken {
		return cl.c.Fail(tag + " BAD invalid AUTHENTICATE arguments")
	}
	var initial []byte
	if len(args) == 2 {
		initial = []byte(args[1].value)
	}
	req, err := cl.c.ReadSASL("imap", args[0].value, initial, "+ ")
	if err != nil {
		return cl.c.SASLFailed(tag+" ", err)
	}
	return cl.finishLogin(tag, req)
}
