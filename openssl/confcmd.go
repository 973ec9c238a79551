package openssl

import (
	"crypto/tls"
	"errors"
	"slices"
	"strings"
)

// This file reads OpenSSL's configuration commands, the name and value
// pairs of SSL_CONF_cmd(3) that nginx's ssl_conf_command passes on and
// that OpenSSL's configuration files hold, into what crypto/tls can do.

// The errors of ParseConfCommand. Their texts are OpenSSL's reasons, which
// name neither the command nor the value: a caller wraps them, as nginx
// reports `SSL_CONF_cmd("Options", "-Frobnicate") failed: bad value`.
var (
	// ErrUnknownCommand is the error for a name SSL_CONF_cmd does not know.
	ErrUnknownCommand = errors.New("unknown cmd name")
	// ErrBadValue is the error for a value OpenSSL refuses. A refused
	// CipherString wraps it, with ParseCipherString's error as its text.
	ErrBadValue = errors.New("bad value")
)

// badValue is ErrBadValue with the reason a parser gave for it.
type badValue struct{ reason error }

func (e *badValue) Error() string   { return e.reason.Error() }
func (e *badValue) Unwrap() []error { return []error{ErrBadValue, e.reason} }

// confCommands are the names SSL_CONF_cmd knows in configuration files
// (SSL_CONF_FLAG_FILE), as OpenSSL spells them.
var confCommands = []string{
	"SignatureAlgorithms", "ClientSignatureAlgorithms", "Curves", "Groups", "ECDHParameters",
	"CipherString", "Ciphersuites", "Protocol", "MinProtocol", "MaxProtocol", "Options", "VerifyMode",
	"Certificate", "PrivateKey", "ServerInfoFile", "ChainCAPath", "ChainCAFile", "ChainCAStore",
	"VerifyCAPath", "VerifyCAFile", "VerifyCAStore", "RequestCAFile", "ClientCAFile", "RequestCAPath",
	"ClientCAPath", "RequestCAStore", "DHParameters", "RecordPadding", "NumTickets",
}

// confOption is an option of the Options command, with the signs
// crypto/tls honours.
type confOption struct{ name, honoured string }

// confOptions are the names the Options command knows, as OpenSSL spells
// them, each with the signs crypto/tls honours: "+" when a crypto/tls
// server does what the option sets, "-" when it does what clearing it
// does.
var confOptions = []confOption{
	{"SessionTicket", "+-"},
	{"ServerPreference", "+"}, // always server preference
	{"PrioritizeChaCha", "+"}, // crypto/tls does it
	{"Compression", "-"},      // never compresses
	{"NoRenegotiation", "+"},  // a crypto/tls server never renegotiates
	{"UnsafeLegacyRenegotiation", "-"},
	{"UnsafeLegacyServerConnect", "-"},
	{"NoResumptionOnRenegotiation", "+"},
	{"ExtendedMasterSecret", "+"},
	{"MiddleboxCompat", "+"},
	{"EncryptThenMac", "-"}, // crypto/tls has no encrypt-then-MAC
	{"EmptyFragments", ""},
	{"Bugs", ""},
	{"DHSingle", "+"},   // no DHE at all
	{"ECDHSingle", "+"}, // fresh ECDHE keys every time
	{"AllowNoDHEKEX", "-"},
	{"AntiReplay", "+"}, // no 0-RTT on a crypto/tls server
	{"CANames", ""},
	{"KTLS", "-"},
	{"StrictCertCheck", ""},
	{"TxCertificateCompression", "-"},
	{"RxCertificateCompression", "-"},
	{"IgnoreUnexpectedEOF", ""},
	{"ClientRenegotiation", "-"},
	{"LegacyServerConnect", "-"},
}

// TLS13CipherSuites returns the names of the TLS 1.3 suites, which
// crypto/tls always enables (a server cannot choose them), sorted:
// TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and
// TLS_CHACHA20_POLY1305_SHA256. OpenSSL names them as crypto/tls does.
func TLS13CipherSuites() []string {
	var names []string
	for _, s := range tls.CipherSuites() {
		if slices.Equal(s.SupportedVersions, []uint16{tls.VersionTLS13}) {
			names = append(names, s.Name)
		}
	}
	slices.Sort(names)
	return names
}

// ConfCommand is one SSL_CONF_cmd setting, read into what crypto/tls can
// do. Which fields are set depends on the command.
type ConfCommand struct {
	// Name is the command's name as OpenSSL spells it: "MinProtocol" for
	// "minprotocol".
	Name string

	// Ciphers is what CipherString selects (see ParseCipherString).
	Ciphers *CipherList
	// Version is the bound that MinProtocol or MaxProtocol sets, numbered
	// as ProtocolVersion numbers it: SSLv3 or a TLS version, or 0 for
	// "None", no bound.
	Version uint16
	// Curves are the groups of Groups (or Curves, the same command) that
	// crypto/tls has, the value for tls.Config.CurvePreferences;
	// UnsupportedCurves are the others, left out (see ParseGroups).
	Curves            []tls.CurveID
	UnsupportedCurves []string
	// SessionTickets is what Options sets with its SessionTicket option,
	// the last one when named twice; nil when Options does not name it.
	SessionTickets *bool
	// File is the file of Certificate (a PEM chain) or PrivateKey (its
	// key). In OpenSSL a PrivateKey gives the key of the Certificate before
	// it, and a Certificate without one has its key in its own file.
	File string

	// Ignored is what crypto/tls cannot honour, and a caller should report:
	// for Options, the options it does not do, each with its sign
	// ("-ServerPreference", "+Bugs"); for another command, its Name, when
	// crypto/tls does not do the command at all (SignatureAlgorithms,
	// VerifyMode, NumTickets, …) or not with this value (Ciphersuites
	// other than TLS13CipherSuites, in any order).
	Ignored []string
}

// ParseConfCommand reads the command name = value as SSL_CONF_cmd does
// for a configuration file, such as ("MinProtocol", "TLSv1.2"),
// ("Options", "-SessionTicket,ServerPreference") or ("CipherString",
// "ECDHE+AESGCM"). The name's case does not matter.
//
// A name OpenSSL does not know is ErrUnknownCommand; a value it refuses
// is ErrBadValue, and so is a Groups list with no curve crypto/tls has or
// a CipherString that enables no suite of crypto/tls (errors.Is tells
// them). A command that crypto/tls cannot honour is not an error: it is
// listed in Ignored, and its value is not checked.
func ParseConfCommand(name, value string) (ConfCommand, error) {
	i := slices.IndexFunc(confCommands, func(c string) bool { return strings.EqualFold(c, name) })
	if i < 0 {
		return ConfCommand{}, ErrUnknownCommand
	}
	c := ConfCommand{Name: confCommands[i]}
	switch c.Name {
	case "CipherString":
		l, err := ParseCipherString(value)
		if err != nil {
			return ConfCommand{}, &badValue{err}
		}
		c.Ciphers = &l
	case "Ciphersuites":
		names := strings.Split(value, ":")
		if !slices.Equal(slices.Sorted(slices.Values(names)), TLS13CipherSuites()) {
			c.Ignored = []string{c.Name}
		}
	case "MinProtocol", "MaxProtocol":
		if value != "None" {
			v, ok := ProtocolVersion(value)
			if !ok || v < versionSSL3 { // OpenSSL 1.1 dropped SSLv2
				return ConfCommand{}, ErrBadValue
			}
			c.Version = v
		}
	case "Groups", "Curves":
		curves, unsupported, err := ParseGroups(value)
		if err != nil {
			return ConfCommand{}, ErrBadValue
		}
		c.Curves, c.UnsupportedCurves = curves, unsupported
	case "Options":
		if err := c.setOptions(value); err != nil {
			return ConfCommand{}, err
		}
	case "Certificate", "PrivateKey":
		c.File = value
	default:
		c.Ignored = []string{c.Name}
	}
	return c, nil
}

// setOptions reads the value of Options: options separated by commas,
// each set, or cleared when it starts with '-'.
func (c *ConfCommand) setOptions(value string) error {
	for _, opt := range strings.Split(value, ",") {
		opt = strings.TrimSpace(opt)
		sign := "+"
		if strings.HasPrefix(opt, "+") || strings.HasPrefix(opt, "-") {
			sign, opt = opt[:1], opt[1:]
		}
		i := slices.IndexFunc(confOptions, func(o confOption) bool { return strings.EqualFold(o.name, opt) })
		if i < 0 {
			return ErrBadValue
		}
		o := confOptions[i]
		switch {
		case o.name == "SessionTicket":
			on := sign == "+"
			c.SessionTickets = &on
		case !strings.Contains(o.honoured, sign):
			c.Ignored = append(c.Ignored, sign+o.name)
		}
	}
	return nil
}
