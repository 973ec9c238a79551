package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
)

const testServerName = "mx.example.org"

// errAny in a table means "some error"; the exact value is go-sasl's.
var errAny = errors.New("any error")

// challengeRE is the form of an APOP or CRAM-MD5 challenge for
// testServerName.
var challengeRE = regexp.MustCompile(`^<[0-9]+\.[0-9]+@` + regexp.QuoteMeta(testServerName) + `>$`)

// exchange runs mech with initial as the initial response (nil: none),
// answering each challenge with the next of responses. Responses left after
// the server said done are still sent, to see them refused. It returns the
// challenges of the steps that were not done.
func exchange(t *testing.T, mech string, initial []byte, responses ...string) (challenges []string, req *Request, done bool, err error) {
	t.Helper()
	req = &Request{Protocol: "imap"}
	s, err := NewSASL(mech, req, testServerName)
	if err != nil {
		t.Fatalf("NewSASL(%q): %v", mech, err)
	}
	resp := initial
	for i := 0; ; i++ {
		var c []byte
		c, done, err = s.Next(resp)
		if err != nil {
			return challenges, req, done, err
		}
		if !done {
			challenges = append(challenges, string(c))
		}
		if i >= len(responses) {
			return challenges, req, done, nil
		}
		resp = []byte(responses[i])
	}
}

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("err = %v, want none", err)
	case want == errAny && err == nil:
		t.Fatal("err = nil, want an error")
	case want != nil && want != errAny && !errors.Is(err, want):
		t.Fatalf("err = %v, want %v", err, want)
	}
}

type saslCase struct {
	name       string
	initial    []byte // nil: no initial response
	responses  []string
	challenges []string // of the steps before done
	err        error
	user, pass string
}

func runSASLCases(t *testing.T, mech string, method Method, tests []saslCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			challenges, req, done, err := exchange(t, mech, tt.initial, tt.responses...)
			checkErr(t, err, tt.err)
			if req.Method != method {
				t.Errorf("Method = %q, want %q", req.Method, method)
			}
			if tt.err != nil {
				// A response after done is refused, but the exchange
				// had succeeded; otherwise no password is taken.
				if req.Password != "" && tt.err != sasl.ErrUnexpectedClientResponse {
					t.Errorf("Password = %q after a failed exchange", req.Password)
				}
				return
			}
			if !done {
				t.Fatal("exchange not done")
			}
			if !slices.Equal(challenges, tt.challenges) {
				t.Errorf("challenges = %q, want %q", challenges, tt.challenges)
			}
			if req.User != tt.user || req.Password != tt.pass {
				t.Errorf("User, Password = %q, %q, want %q, %q", req.User, req.Password, tt.user, tt.pass)
			}
		})
	}
}

func TestSASLPlain(t *testing.T) {
	long := strings.Repeat("x", 2000)
	runSASLCases(t, SASLPlain, MethodPlain, []saslCase{
		{name: "initial response", initial: []byte("\x00alice\x00secret"), user: "alice", pass: "secret"},
		{name: "no initial response", responses: []string{"\x00alice\x00secret"},
			challenges: []string{""}, user: "alice", pass: "secret"},
		{name: "authzid equal to user", initial: []byte("alice\x00alice\x00secret"), user: "alice", pass: "secret"},
		{name: "authzid differs", initial: []byte("bob\x00alice\x00secret"), err: ErrAuthzID},
		{name: "empty password passed on", initial: []byte("\x00alice\x00"), user: "alice", pass: ""},
		{name: "password with spaces", initial: []byte("\x00alice\x00s e c"), user: "alice", pass: "s e c"},
		{name: "two parts", initial: []byte("alice\x00secret"), err: errAny},
		{name: "one part", initial: []byte("alice"), err: errAny},
		{name: "four parts", initial: []byte("\x00alice\x00secret\x00x"), err: errAny},
		{name: "empty initial response", initial: []byte{}, err: errAny},
		{name: "empty user", initial: []byte("\x00\x00secret"), err: ErrBadResponse},
		{name: "long password", initial: []byte("\x00alice\x00" + long), err: errLongResponse},
		{name: "long user", initial: []byte("\x00" + long + "\x00secret"), err: errLongResponse},
		{name: "response after done", initial: []byte("\x00alice\x00secret"), responses: []string{"more"},
			err: sasl.ErrUnexpectedClientResponse},
	})
}

func TestSASLLogin(t *testing.T) {
	runSASLCases(t, SASLLogin, MethodLogin, []saslCase{
		{name: "no initial response", responses: []string{"alice", "secret"},
			challenges: []string{"Username:", "Password:"}, user: "alice", pass: "secret"},
		{name: "initial response is the user", initial: []byte("alice"), responses: []string{"secret"},
			challenges: []string{"Password:"}, user: "alice", pass: "secret"},
		{name: "user with space", responses: []string{"john smith", "pass word"},
			challenges: []string{"Username:", "Password:"}, user: "john smith", pass: "pass word"},
		{name: "empty password passed on", responses: []string{"alice", ""},
			challenges: []string{"Username:", "Password:"}, user: "alice", pass: ""},
		{name: "empty user", responses: []string{"", "secret"}, err: ErrBadResponse},
		{name: "empty initial response", initial: []byte{}, responses: []string{"secret"}, err: ErrBadResponse},
		{name: "long user", responses: []string{strings.Repeat("u", maxCredentialLen+1), "secret"}, err: ErrBadResponse},
		{name: "long password", responses: []string{"alice", strings.Repeat("p", maxCredentialLen+1)}, err: errLongResponse},
		{name: "response after done", responses: []string{"alice", "secret", "more"},
			err: sasl.ErrUnexpectedClientResponse},
		{name: "response after done, initial", initial: []byte("alice"), responses: []string{"secret", "more"},
			err: sasl.ErrUnexpectedClientResponse},
	})
}

func TestSASLExternal(t *testing.T) {
	runSASLCases(t, SASLExternal, MethodExternal, []saslCase{
		{name: "initial response", initial: []byte("alice@example.org"), user: "alice@example.org"},
		{name: "no initial response", responses: []string{"alice"}, challenges: []string{""}, user: "alice"},
		{name: "empty identity, initial", initial: []byte{}, user: ""},
		{name: "empty identity", responses: []string{""}, challenges: []string{""}, user: ""},
		{name: "NUL", initial: []byte("ali\x00ce"), err: errAny},
		{name: "long identity", initial: bytes.Repeat([]byte("a"), maxCredentialLen+1), err: errLongResponse},
		{name: "response after done", initial: []byte("alice"), responses: []string{"more"},
			err: sasl.ErrUnexpectedClientResponse},
	})
}

// cramDigest is the CRAM-MD5 answer to challenge with password (RFC 2195).
func cramDigest(challenge, password string) string {
	m := hmac.New(md5.New, []byte(password))
	m.Write([]byte(challenge))
	return hex.EncodeToString(m.Sum(nil))
}

func TestSASLCRAMMD5(t *testing.T) {
	tests := []struct {
		name    string
		initial []byte
		// response builds the client's answer to the challenge.
		response   func(challenge string) string
		err        error
		user, pass func(challenge string) string
	}{
		{
			name:     "good",
			response: func(c string) string { return "alice " + cramDigest(c, "secret") },
			user:     func(string) string { return "alice" },
			pass:     func(c string) string { return cramDigest(c, "secret") },
		},
		{
			name:     "upper-case hex",
			response: func(c string) string { return "alice " + strings.ToUpper(cramDigest(c, "secret")) },
			user:     func(string) string { return "alice" },
			pass:     func(c string) string { return strings.ToUpper(cramDigest(c, "secret")) },
		},
		{
			name:     "user with a space",
			response: func(c string) string { return "john smith " + cramDigest(c, "secret") },
			user:     func(string) string { return "john smith" },
			pass:     func(c string) string { return cramDigest(c, "secret") },
		},
		{name: "31 hex digits", response: func(c string) string { return "alice " + cramDigest(c, "secret")[1:] }, err: ErrBadResponse},
		{name: "33 hex digits", response: func(c string) string { return "alice 0" + cramDigest(c, "secret") }, err: ErrBadResponse},
		{name: "not hex", response: func(string) string { return "alice " + strings.Repeat("g", 32) }, err: ErrBadResponse},
		{name: "digest missing", response: func(string) string { return "alice" }, err: ErrBadResponse},
		{name: "digest empty", response: func(string) string { return "alice " }, err: ErrBadResponse},
		{name: "user missing", response: func(c string) string { return " " + cramDigest(c, "secret") }, err: ErrBadResponse},
		{name: "digest alone", response: func(c string) string { return cramDigest(c, "secret") }, err: ErrBadResponse},
		{name: "empty response", response: func(string) string { return "" }, err: ErrBadResponse},
		{name: "long user",
			response: func(c string) string { return strings.Repeat("u", maxCredentialLen+1) + " " + cramDigest(c, "secret") },
			err:      errLongResponse},
		{name: "initial response", initial: []byte("alice " + strings.Repeat("0", 32)), err: ErrBadResponse},
		{name: "empty initial response", initial: []byte{}, err: ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &Request{Protocol: "imap"}
			s, err := NewSASL(SASLCRAMMD5, req, testServerName)
			if err != nil {
				t.Fatal(err)
			}
			if req.Method != MethodCRAMMD5 {
				t.Errorf("Method = %q", req.Method)
			}
			salt := req.Salt
			if !challengeRE.MatchString(salt) {
				t.Errorf("Salt %q does not look like <digits.digits@%s>", salt, testServerName)
			}
			c, done, err := s.Next(tt.initial)
			if tt.initial != nil {
				checkErr(t, err, tt.err)
				return
			}
			if err != nil || done {
				t.Fatalf("first step: done %v, err %v", done, err)
			}
			if string(c) != salt {
				t.Fatalf("challenge %q, want the Salt %q", c, salt)
			}
			_, done, err = s.Next([]byte(tt.response(salt)))
			checkErr(t, err, tt.err)
			if tt.err != nil {
				if req.User != "" || req.Password != "" {
					t.Errorf("User, Password = %q, %q after a failed exchange", req.User, req.Password)
				}
				return
			}
			if !done {
				t.Fatal("exchange not done")
			}
			if req.User != tt.user(salt) || req.Password != tt.pass(salt) || req.Salt != salt {
				t.Errorf("User, Password, Salt = %q, %q, %q; want %q, %q, %q",
					req.User, req.Password, req.Salt, tt.user(salt), tt.pass(salt), salt)
			}
		})
	}
}

func TestSASLUnknownMechanism(t *testing.T) {
	for _, mech := range []string{"DIGEST-MD5", "XOAUTH2", "", "PLAIN ", "CRAM-MD5\x00"} {
		t.Run(mech, func(t *testing.T) {
			req := &Request{}
			s, err := NewSASL(mech, req, testServerName)
			if !errors.Is(err, ErrUnknownMech) || s != nil {
				t.Fatalf("NewSASL(%q) = %v, %v; want nil, ErrUnknownMech", mech, s, err)
			}
			if req.Method != "" {
				t.Errorf("Method = %q", req.Method)
			}
		})
	}
}

func TestMechanismMethods(t *testing.T) {
	tests := []struct {
		mech string
		want Method
		ok   bool
	}{
		{"PLAIN", MethodPlain, true},
		{"plain", MethodPlain, true},
		{"Login", MethodLogin, true},
		{"LOGIN", MethodLogin, true},
		{"cram-md5", MethodCRAMMD5, true},
		{"CRAM-MD5", MethodCRAMMD5, true},
		{"External", MethodExternal, true},
		{"XOAUTH2", "", false},
		{"APOP", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.mech, func(t *testing.T) {
			got, ok := mechanismMethod(tt.mech)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("mechanismMethod(%q) = %q, %v; want %q, %v", tt.mech, got, ok, tt.want, tt.ok)
			}
			// NewSASL takes the name in any case too.
			if tt.ok {
				req := &Request{}
				if _, err := NewSASL(tt.mech, req, testServerName); err != nil || req.Method != tt.want {
					t.Errorf("NewSASL(%q): Method %q, err %v", tt.mech, req.Method, err)
				}
			}
		})
	}
}

func TestChallenge(t *testing.T) {
	a, b := Challenge(testServerName), Challenge(testServerName)
	if a == b {
		t.Errorf("two challenges are equal: %q", a)
	}
	for _, c := range []string{a, b} {
		if !challengeRE.MatchString(c) || !strings.Contains(c, testServerName) {
			t.Errorf("challenge %q does not look like <digits.digits@%s>", c, testServerName)
		}
	}
}

func TestAPOPRequest(t *testing.T) {
	const challenge = "<1896.697170952@dbc.mtview.ca.us>"
	const digest = "c4c9334bac560ecc979e58001b3e22fb" // RFC 1939, password tanstaaf
	tests := []struct {
		name, user, digest string
		err                error
	}{
		{"good", "mrose", digest, nil},
		{"upper-case digest", "mrose", strings.ToUpper(digest), nil},
		{"short digest", "mrose", digest[1:], ErrBadResponse},
		{"long digest", "mrose", digest + "0", ErrBadResponse},
		{"not hex", "mrose", strings.Repeat("z", 32), ErrBadResponse},
		{"empty digest", "mrose", "", ErrBadResponse},
		{"empty name", "", digest, ErrBadResponse},
		{"long name", strings.Repeat("n", maxCredentialLen+1), digest, ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &Request{Protocol: "pop3"}
			err := APOPRequest(req, tt.user, tt.digest, challenge)
			checkErr(t, err, tt.err)
			want := Request{Protocol: "pop3"}
			if tt.err == nil {
				want.Method, want.User, want.Password, want.Salt = MethodAPOP, tt.user, tt.digest, challenge
			}
			if req.Method != want.Method || req.User != want.User || req.Password != want.Password || req.Salt != want.Salt {
				t.Errorf("req = %+v, want %+v", *req, want)
			}
		})
	}
	// The digest of the test vector is what a client computes.
	sum := md5.Sum([]byte(challenge + "tanstaaf"))
	if hex.EncodeToString(sum[:]) != digest {
		t.Errorf("RFC 1939 test vector: got %x", sum)
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"plain ASCII", "alice@example.org", "alice@example.org"},
		{"punctuation", "p+a/s:s?w#o&r=d!~*'()[]", "p+a/s:s?w#o&r=d!~*'()[]"},
		{"space", "john smith", "john%20smith"},
		{"percent", "100%", "100%25"},
		{"escaped-looking", "%41", "%2541"},
		{"CR LF", "a\r\nAuth-Status: OK", "a%0D%0AAuth-Status:%20OK"},
		{"tab", "a\tb", "a%09b"},
		{"NUL", "\x00", "%00"},
		{"DEL", "a\x7fb", "a%7Fb"},
		{"UTF-8", "пароль naïve", "пароль%20naïve"},
		{"UTF-8 unchanged", "пароль", "пароль"},
		{"invalid UTF-8", "\xff\x80", "\xff\x80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escape(tt.in); got != tt.want {
				t.Errorf("escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	for _, s := range []string{"", "john smith", "100%", "%41%", "a\r\n\t\x00\x1f\x7fb", "пароль", "p+w/d", "\xff"} {
		got, err := url.PathUnescape(escape(s))
		if err != nil || got != s {
			t.Errorf("PathUnescape(escape(%q)) = %q, %v", s, got, err)
		}
	}
}

func TestBackendLogin(t *testing.T) {
	const digest = "0123456789abcdef0123456789abcdef"
	// The client's credentials for each method.
	clients := map[Method]Request{
		MethodPlain:    {User: "alice", Password: "secret"},
		MethodLogin:    {User: "alice", Password: "secret"},
		MethodAPOP:     {User: "alice", Password: digest, Salt: "<1.2@x>"},
		MethodCRAMMD5:  {User: "alice", Password: digest, Salt: "<1.2@x>"},
		MethodExternal: {User: "alice"},
		MethodNone:     {},
	}
	var (
		noResult = Result{Backend: "b:1"}
		userOnly = Result{Backend: "b:1", User: "bob"}
		both     = Result{Backend: "b:1", User: "bob", Password: "bpw"}
		passOnly = Result{Backend: "b:1", Password: "bpw"}
	)
	type want struct {
		user, pass string
		err        error
	}
	tests := []struct {
		name   string
		method Method
		res    Result
		// mailbox is the answer for imap and pop3, smtp for smtp.
		mailbox, smtp want
	}{
		{"no result credentials", MethodPlain, noResult, want{"alice", "secret", nil}, want{"alice", "secret", nil}},
		{"result user", MethodPlain, userOnly, want{"bob", "secret", nil}, want{"bob", "secret", nil}},
		{"result password", MethodPlain, passOnly, want{"alice", "bpw", nil}, want{"alice", "bpw", nil}},
		{"result both", MethodPlain, both, want{"bob", "bpw", nil}, want{"bob", "bpw", nil}},

		{"no result credentials", MethodLogin, noResult, want{"alice", "secret", nil}, want{"alice", "secret", nil}},
		{"result user", MethodLogin, userOnly, want{"bob", "secret", nil}, want{"bob", "secret", nil}},
		{"result both", MethodLogin, both, want{"bob", "bpw", nil}, want{"bob", "bpw", nil}},

		// The digest is never a password.
		{"no result credentials", MethodAPOP, noResult, want{err: ErrNoPassword}, want{"alice", "", nil}},
		{"result user", MethodAPOP, userOnly, want{err: ErrNoPassword}, want{"bob", "", nil}},
		{"result password", MethodAPOP, passOnly, want{"alice", "bpw", nil}, want{"alice", "bpw", nil}},
		{"result both", MethodAPOP, both, want{"bob", "bpw", nil}, want{"bob", "bpw", nil}},

		{"no result credentials", MethodCRAMMD5, noResult, want{err: ErrNoPassword}, want{"alice", "", nil}},
		{"result user", MethodCRAMMD5, userOnly, want{err: ErrNoPassword}, want{"bob", "", nil}},
		{"result password", MethodCRAMMD5, passOnly, want{"alice", "bpw", nil}, want{"alice", "bpw", nil}},
		{"result both", MethodCRAMMD5, both, want{"bob", "bpw", nil}, want{"bob", "bpw", nil}},

		{"no result credentials", MethodExternal, noResult, want{err: ErrNoPassword}, want{"alice", "", nil}},
		{"result user", MethodExternal, userOnly, want{err: ErrNoPassword}, want{"bob", "", nil}},
		{"result password", MethodExternal, passOnly, want{"alice", "bpw", nil}, want{"alice", "bpw", nil}},
		{"result both", MethodExternal, both, want{"bob", "bpw", nil}, want{"bob", "bpw", nil}},

		{"no result credentials", MethodNone, noResult, want{err: ErrNoPassword}, want{"", "", nil}},
		{"result user", MethodNone, userOnly, want{err: ErrNoPassword}, want{"bob", "", nil}},
		{"result both", MethodNone, both, want{"bob", "bpw", nil}, want{"bob", "bpw", nil}},
	}
	for _, tt := range tests {
		for _, proto := range []string{"imap", "pop3", "smtp"} {
			t.Run(string(tt.method)+"/"+proto+"/"+tt.name, func(t *testing.T) {
				w := tt.mailbox
				if proto == "smtp" {
					w = tt.smtp
				}
				req := clients[tt.method]
				req.Protocol, req.Method = proto, tt.method
				res := tt.res
				user, pass, err := res.BackendLogin(&req)
				if err != w.err || user != w.user || pass != w.pass {
					t.Fatalf("BackendLogin = %q, %q, %v; want %q, %q, %v", user, pass, err, w.user, w.pass, w.err)
				}
			})
		}
	}
}
