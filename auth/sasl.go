package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// SASL mechanism names as the protocols announce them.
const (
	SASLPlain    = "PLAIN"
	SASLLogin    = "LOGIN"
	SASLCRAMMD5  = "CRAM-MD5"
	SASLExternal = "EXTERNAL"
)

// Errors of a SASL mechanism; each protocol answers them in its own words.
var (
	ErrBadResponse   = errors.New("auth: invalid SASL response")
	ErrUnknownMech   = errors.New("auth: unknown SASL mechanism")
	ErrAuthzID       = errors.New("auth: authorization identity differs from the user")
	errLongResponse  = errors.New("auth: SASL response too long")
	maxCredentialLen = 1024 // bytes of a user name or password
)

// mechanismMethod maps a SASL mechanism to the login Method it reports.
func mechanismMethod(mech string) (Method, bool) {
	switch strings.ToUpper(mech) {
	case SASLPlain:
		return MethodPlain, true
	case SASLLogin:
		return MethodLogin, true
	case SASLCRAMMD5:
		return MethodCRAMMD5, true
	case SASLExternal:
		return MethodExternal, true
	}
	return "", false
}

// NewSASL starts the server side of a SASL exchange for mech. The
// mechanisms do not decide anything: they collect the credentials into req
// (User, Password, Salt and Method) for the Authenticator to judge.
// serverName goes into the CRAM-MD5 challenge.
//
// PLAIN and EXTERNAL are go-sasl's; LOGIN and CRAM-MD5, which go-sasl has
// no server for, are written here in the same shape.
func NewSASL(mech string, req *Request, serverName string) (sasl.Server, error) {
	method, ok := mechanismMethod(mech)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMech, mech)
	}
	req.Method = method
	switch method {
	case MethodPlain:
		return sasl.NewPlainServer(func(authzid, user, pass string) error {
			if authzid != "" && authzid != user {
				return ErrAuthzID
			}
			return setCredentials(req, user, pass)
		}), nil
	case MethodLogin:
		return &loginServer{req: req}, nil
	case MethodCRAMMD5:
		req.Salt = Challenge(serverName)
		return &cramServer{req: req}, nil
	default:
		return sasl.NewExternalServer(func(identity string) error {
			return setCredentials(req, identity, "")
		}), nil
	}
}

func setCredentials(req *Request, user, pass string) error {
	if len(user) > maxCredentialLen || len(pass) > maxCredentialLen {
		return errLongResponse
	}
	if user == "" && req.Method != MethodExternal {
		return ErrBadResponse
	}
	req.User, req.Password = user, pass
	return nil
}

// loginServer is the server side of the LOGIN mechanism: it asks for
// "Username:" and "Password:". An initial response is the user name.
type loginServer struct {
	req  *Request
	step int
}

var (
	usernamePrompt = []byte("Username:")
	passwordPrompt = []byte("Password:")
)

func (s *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	s.step++
	switch {
	case s.step == 1 && resp == nil:
		return usernamePrompt, false, nil
	case s.step == 1:
		s.step++ // the initial response was the user name
		fallthrough
	case s.step == 2:
		if len(resp) == 0 || len(resp) > maxCredentialLen {
			return nil, false, ErrBadResponse
		}
		s.req.User = string(resp)
		return passwordPrompt, false, nil
	case s.step == 3:
		return nil, true, setCredentials(s.req, s.req.User, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// cramServer is the server side of CRAM-MD5 (RFC 2195): the challenge is
// req.Salt, the response "user hexdigest". The digest goes to the
// Authenticator as the password, with the challenge as the salt.
type cramServer struct {
	req        *Request
	sent, done bool
}

func (s *cramServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	if s.done {
		return nil, false, sasl.ErrUnexpectedClientResponse
	}
	if !s.sent {
		s.sent = true
		if resp != nil {
			return nil, false, ErrBadResponse // CRAM-MD5 has no initial response
		}
		return []byte(s.req.Salt), false, nil
	}
	s.done = true
	i := bytes.LastIndexByte(resp, ' ')
	if i <= 0 || !isHexDigest(resp[i+1:]) {
		return nil, false, ErrBadResponse
	}
	return nil, true, setCredentials(s.req, string(resp[:i]), string(resp[i+1:]))
}

// isHexDigest reports whether b is an MD5 digest in hex (RFC 2195 and
// 1939 ask for lower case; upper case is taken too).
func isHexDigest(b []byte) bool {
	if len(b) != 32 {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Challenge makes an APOP or CRAM-MD5 challenge as nginx does:
// "<random.time@server_name>".
func Challenge(serverName string) string {
	var r [8]byte
	rand.Read(r[:])
	return fmt.Sprintf("<%d.%d@%s>", binary.BigEndian.Uint64(r[:])>>1, time.Now().Unix(), serverName)
}

// APOPRequest fills req for "APOP name digest" answered to challenge.
func APOPRequest(req *Request, name, digest, challenge string) error {
	if !isHexDigest([]byte(digest)) || name == "" || len(name) > maxCredentialLen {
		return ErrBadResponse
	}
	req.Method, req.User, req.Password, req.Salt = MethodAPOP, name, digest, challenge
	return nil
}
