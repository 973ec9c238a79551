package openssl

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// This file reads OpenSSL cipher strings (ssl_ciphers in nginx, the
// CipherString command of SSL_CONF_cmd) into the cipher suites of
// crypto/tls, with OpenSSL's rules: see ciphers(1) and
// ssl_cipher_process_rulestr in OpenSSL's ssl/ssl_ciph.c.

// The attributes of a suite, as bit masks in the manner of OpenSSL's
// algorithm_mkey, algorithm_auth, algorithm_enc, algorithm_mac and
// algo_strength. Only the values some crypto/tls suite has are needed.
const (
	kxRSA uint32 = 1 << iota
	kxECDHE
)

const (
	auRSA uint32 = 1 << iota
	auECDSA
)

const (
	encAES128 uint32 = 1 << iota // CBC
	encAES256                    // CBC
	encAES128GCM
	encAES256GCM
	encCHACHA20
	enc3DES
	encRC4
)

const (
	macSHA1 uint32 = 1 << iota
	macSHA256
	macSHA384
	macAEAD
)

const (
	strMedium     uint32 = 1 << 2
	strHigh       uint32 = 1 << 3
	strFIPS       uint32 = 1 << 4
	strongMask           = 0x1f
	strNotDefault uint32 = 1 << 5 // not in DEFAULT
)

// Minimum protocol versions of suites, as OpenSSL's min_tls.
const (
	minSSL3  uint16 = 0x0300
	minTLS1  uint16 = 0x0301
	minTLS12 uint16 = 0x0303
)

// cipherMatch selects suites: each nonzero mask must share a bit with the
// suite's; id, when set, names one suite.
type cipherMatch struct {
	kx, au, enc, mac, strength uint32
	minTLS                     uint16
	id                         uint16
}

// cipherSuiteInfo is a crypto/tls suite with its OpenSSL name and
// attributes.
type cipherSuiteInfo struct {
	name string
	bits int // key length, for @STRENGTH
	cipherMatch
}

// cipherTable holds the suites of crypto/tls for TLS 1.0 to 1.2 in the
// order OpenSSL 3 lists them for "ALL", which is where an alias puts them.
var cipherTable = []cipherSuiteInfo{
	{"ECDHE-ECDSA-AES256-GCM-SHA384", 256, cipherMatch{kxECDHE, auECDSA, encAES256GCM, macAEAD, strHigh | strFIPS, minTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
	{"ECDHE-RSA-AES256-GCM-SHA384", 256, cipherMatch{kxECDHE, auRSA, encAES256GCM, macAEAD, strHigh | strFIPS, minTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}},
	{"ECDHE-ECDSA-CHACHA20-POLY1305", 256, cipherMatch{kxECDHE, auECDSA, encCHACHA20, macAEAD, strHigh, minTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
	{"ECDHE-RSA-CHACHA20-POLY1305", 256, cipherMatch{kxECDHE, auRSA, encCHACHA20, macAEAD, strHigh, minTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}},
	{"ECDHE-ECDSA-AES128-GCM-SHA256", 128, cipherMatch{kxECDHE, auECDSA, encAES128GCM, macAEAD, strHigh | strFIPS, minTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
	{"ECDHE-RSA-AES128-GCM-SHA256", 128, cipherMatch{kxECDHE, auRSA, encAES128GCM, macAEAD, strHigh | strFIPS, minTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
	{"ECDHE-ECDSA-AES128-SHA256", 128, cipherMatch{kxECDHE, auECDSA, encAES128, macSHA256, strHigh | strFIPS, minTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
	{"ECDHE-RSA-AES128-SHA256", 128, cipherMatch{kxECDHE, auRSA, encAES128, macSHA256, strHigh | strFIPS, minTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}},
	{"ECDHE-ECDSA-AES256-SHA", 256, cipherMatch{kxECDHE, auECDSA, encAES256, macSHA1, strHigh | strFIPS, minTLS1, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}},
	{"ECDHE-RSA-AES256-SHA", 256, cipherMatch{kxECDHE, auRSA, encAES256, macSHA1, strHigh | strFIPS, minTLS1, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}},
	{"ECDHE-ECDSA-AES128-SHA", 128, cipherMatch{kxECDHE, auECDSA, encAES128, macSHA1, strHigh | strFIPS, minTLS1, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
	{"ECDHE-RSA-AES128-SHA", 128, cipherMatch{kxECDHE, auRSA, encAES128, macSHA1, strHigh | strFIPS, minTLS1, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}},
	{"AES256-GCM-SHA384", 256, cipherMatch{kxRSA, auRSA, encAES256GCM, macAEAD, strHigh | strFIPS, minTLS12, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}},
	{"AES128-GCM-SHA256", 128, cipherMatch{kxRSA, auRSA, encAES128GCM, macAEAD, strHigh | strFIPS, minTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
	{"AES128-SHA256", 128, cipherMatch{kxRSA, auRSA, encAES128, macSHA256, strHigh | strFIPS, minTLS12, tls.TLS_RSA_WITH_AES_128_CBC_SHA256}},
	{"AES256-SHA", 256, cipherMatch{kxRSA, auRSA, encAES256, macSHA1, strHigh | strFIPS, minSSL3, tls.TLS_RSA_WITH_AES_256_CBC_SHA}},
	{"AES128-SHA", 128, cipherMatch{kxRSA, auRSA, encAES128, macSHA1, strHigh | strFIPS, minSSL3, tls.TLS_RSA_WITH_AES_128_CBC_SHA}},
	{"ECDHE-RSA-DES-CBC3-SHA", 112, cipherMatch{kxECDHE, auRSA, enc3DES, macSHA1, strMedium | strFIPS | strNotDefault, minTLS1, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA}},
	{"DES-CBC3-SHA", 112, cipherMatch{kxRSA, auRSA, enc3DES, macSHA1, strMedium | strFIPS | strNotDefault, minSSL3, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}},
	{"ECDHE-ECDSA-RC4-SHA", 128, cipherMatch{kxECDHE, auECDSA, encRC4, macSHA1, strMedium | strNotDefault, minTLS1, tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA}},
	{"ECDHE-RSA-RC4-SHA", 128, cipherMatch{kxECDHE, auRSA, encRC4, macSHA1, strMedium | strNotDefault, minTLS1, tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA}},
	{"RC4-SHA", 128, cipherMatch{kxRSA, auRSA, encRC4, macSHA1, strMedium | strNotDefault, minSSL3, tls.TLS_RSA_WITH_RC4_128_SHA}},
}

const allEnc = encAES128 | encAES256 | encAES128GCM | encAES256GCM | encCHACHA20 | enc3DES | encRC4

// cipherAliases are OpenSSL's aliases that select some crypto/tls suite.
// Every other OpenSSL alias (aNULL, eNULL, NULL, MD5, LOW, EXPORT, EDH,
// DHE, kDHE, ADH, AECDH, PSK, SRP, CAMELLIA, ARIA, AESCCM, SEED, IDEA, …)
// selects none, and is treated as an unknown name is: it matches nothing.
var cipherAliases = map[string]cipherMatch{
	"ALL":                 {enc: allEnc},
	"COMPLEMENTOFDEFAULT": {strength: strNotDefault},
	"kRSA":                {kx: kxRSA},
	"RSA":                 {kx: kxRSA},
	"kECDHE":              {kx: kxECDHE},
	"kEECDH":              {kx: kxECDHE},
	"ECDHE":               {kx: kxECDHE},
	"EECDH":               {kx: kxECDHE},
	"ECDH":                {kx: kxECDHE},
	"aRSA":                {au: auRSA},
	"aECDSA":              {au: auECDSA},
	"ECDSA":               {au: auECDSA},
	"AES128":              {enc: encAES128 | encAES128GCM},
	"AES256":              {enc: encAES256 | encAES256GCM},
	"AES":                 {enc: encAES128 | encAES256 | encAES128GCM | encAES256GCM},
	"AESGCM":              {enc: encAES128GCM | encAES256GCM},
	"CHACHA20":            {enc: encCHACHA20},
	"3DES":                {enc: enc3DES},
	"RC4":                 {enc: encRC4},
	"CBC":                 {enc: encAES128 | encAES256 | enc3DES},
	"SHA1":                {mac: macSHA1},
	"SHA":                 {mac: macSHA1},
	"SHA256":              {mac: macSHA256},
	"SHA384":              {mac: macSHA384},
	"SSLv3":               {minTLS: minSSL3},
	"TLSv1":               {minTLS: minTLS1},
	"TLSv1.0":             {minTLS: minTLS1},
	"TLSv1.2":             {minTLS: minTLS12},
	"MEDIUM":              {strength: strMedium},
	"HIGH":                {strength: strHigh},
	"FIPS":                {strength: strFIPS},
}

// defaultCipherList is what "DEFAULT" at the start of a string stands for
// (OpenSSL's SSL_DEFAULT_CIPHER_LIST).
const defaultCipherList = "ALL:!COMPLEMENTOFDEFAULT:!eNULL"

// secureSuites are the IDs of tls.CipherSuites.
var secureSuites = func() map[uint16]bool {
	m := map[uint16]bool{}
	for _, s := range tls.CipherSuites() {
		m[s.ID] = true
	}
	return m
}()

func (m cipherMatch) matches(c *cipherSuiteInfo) bool {
	switch {
	case m.id != 0 && m.id != c.id,
		m.kx != 0 && m.kx&c.kx == 0,
		m.au != 0 && m.au&c.au == 0,
		m.enc != 0 && m.enc&c.enc == 0,
		m.mac != 0 && m.mac&c.mac == 0,
		m.minTLS != 0 && m.minTLS != c.minTLS,
		m.strength&strongMask != 0 && m.strength&c.strength&strongMask == 0,
		m.strength&strNotDefault != 0 && c.strength&strNotDefault == 0:
		return false
	}
	return true
}

// and narrows m by n, as OpenSSL joins the parts of "A+B". It reports
// false when nothing can match.
func (m *cipherMatch) and(n cipherMatch) bool {
	narrow := func(a *uint32, b uint32) bool {
		if b == 0 {
			return true
		}
		if *a == 0 {
			*a = b
		} else {
			*a &= b
		}
		return *a != 0
	}
	if !narrow(&m.kx, n.kx) || !narrow(&m.au, n.au) || !narrow(&m.enc, n.enc) || !narrow(&m.mac, n.mac) {
		return false
	}
	strong := m.strength & strongMask
	if !narrow(&strong, n.strength&strongMask) {
		return false
	}
	m.strength = m.strength&^strongMask | strong
	if n.strength&strNotDefault != 0 {
		m.strength |= strNotDefault
	}
	if n.id != 0 {
		m.id = n.id
	} else if n.minTLS != 0 {
		if m.minTLS != 0 && m.minTLS != n.minTLS {
			return false
		}
		m.minTLS = n.minTLS
	}
	return true
}

// lookupCipher returns what one name selects: an alias, or a suite with
// all its attributes.
func lookupCipher(name string) (cipherMatch, bool) {
	if m, ok := cipherAliases[name]; ok {
		return m, true
	}
	for i := range cipherTable {
		if cipherTable[i].name == name {
			m := cipherTable[i].cipherMatch
			m.minTLS = 0 // a suite's version is not part of the pattern
			return m, true
		}
	}
	return cipherMatch{}, false
}

// CipherList is what a cipher string selects.
type CipherList struct {
	// CipherSuites are the crypto/tls suites enabled, in the string's
	// order: the value for tls.Config.CipherSuites.
	CipherSuites []uint16
	// Unsupported are the elements that add no suite crypto/tls has.
	Unsupported []string
	// Insecure are the elements whose suites were all left out because
	// crypto/tls counts them as insecure and the string did not name them
	// one by one.
	Insecure []string
	// SecLevel is the level "@SECLEVEL=n" sets, or -1. crypto/tls has no
	// security levels: it is only reported.
	SecLevel int
}

// ruleOp is what an element does with the suites it selects.
type ruleOp int8

const (
	opAdd ruleOp = iota
	opDel
	opOrd
	opKill
	opSpecial
)

// cipherState is OpenSSL's list of suites while a string is applied: the
// order of every suite still in the list, and which are enabled.
type cipherState struct {
	order    []int // indexes in cipherTable; killed suites are dropped
	active   []bool
	explicit map[uint16]bool // suites an added element names itself
}

// ParseCipherString reads an OpenSSL cipher string, such as
// "HIGH:!aNULL:!MD5" or "ECDHE+AESGCM:ECDHE+CHACHA20", into the suites of
// crypto/tls it enables. An error means that the string is malformed or
// enables no suite ("no cipher match").
//
// A cipher string is a list of elements separated by ':', ',', ';' or
// spaces. An element names an alias (HIGH, ECDHE, AESGCM, …) or one suite
// (ECDHE-RSA-AES128-GCM-SHA256); several joined by '+' select the suites
// that every part selects. Without a prefix, the selected suites are added
// at the end of the list; '-' takes them out (a later element may add them
// again), '!' takes them out for good, '+' moves them to the end.
// "@STRENGTH" sorts by key length, "@SECLEVEL=n" sets OpenSSL's security
// level, and a string may start with "DEFAULT", OpenSSL's default list.
//
// Only the suites of TLS 1.0 to 1.2 that crypto/tls implements can be
// selected; names of other suites (DHE, CAMELLIA, ARIA, PSK, SRP, CCM, the
// NULL ciphers, …) select nothing, and are listed in Unsupported. As in
// OpenSSL, cipher strings do not cover TLS 1.3, whose suites crypto/tls
// does not let a server choose: it always enables TLS_AES_128_GCM_SHA256,
// TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256.
//
// Two differences with OpenSSL remain. The order of the list is kept, but
// a crypto/tls server chooses among the enabled suites by its own
// preference order, so the order has no effect (nor has @STRENGTH). And a
// suite that crypto/tls counts as insecure (tls.InsecureCipherSuites: RSA
// key exchange, RC4, 3DES, CBC with SHA-256) is only enabled when the
// string names it on its own, as in "AES128-GCM-SHA256": an alias such as
// HIGH or kRSA never brings one in (the element is then listed in
// Insecure).
func ParseCipherString(s string) (CipherList, error) {
	st := &cipherState{active: make([]bool, len(cipherTable)), explicit: map[uint16]bool{}}
	for i := range cipherTable {
		st.order = append(st.order, i)
	}
	res := CipherList{SecLevel: -1}
	rest := s
	if strings.HasPrefix(rest, "DEFAULT") {
		if err := st.apply(defaultCipherList, &res, true); err != nil {
			return CipherList{}, err
		}
		rest = strings.TrimPrefix(rest[len("DEFAULT"):], ":")
	}
	if err := st.apply(rest, &res, false); err != nil {
		return CipherList{}, err
	}
	selected := map[uint16]bool{} // every suite some added element selected
	for _, i := range st.order {
		if !st.active[i] {
			continue
		}
		id := cipherTable[i].id
		selected[id] = true
		if secureSuites[id] || st.explicit[id] {
			res.CipherSuites = append(res.CipherSuites, id)
		}
	}
	if len(res.CipherSuites) == 0 {
		if len(selected) > 0 {
			return CipherList{}, fmt.Errorf("no cipher match in %q: crypto/tls enables its insecure suites only when named one by one", s)
		}
		return CipherList{}, fmt.Errorf("no cipher match in %q", s)
	}
	return res, nil
}

func isCipherSep(c byte) bool { return c == ':' || c == ' ' || c == ';' || c == ',' }

func isCipherNameByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '='
}

// apply runs the elements of s on the list. quiet keeps the elements out
// of the lists of unsupported and insecure names (for DEFAULT).
func (st *cipherState) apply(s string, res *CipherList, quiet bool) error {
	l := 0
	for l < len(s) {
		ch := s[l]
		op := opAdd
		switch ch {
		case '-':
			op = opDel
		case '+':
			op = opOrd
		case '!':
			op = opKill
		case '@':
			op = opSpecial
		}
		if op != opAdd {
			l++
		}
		if isCipherSep(ch) {
			l++
			continue
		}
		start := l
		var m cipherMatch
		found := true
		for {
			nameStart := l
			for l < len(s) && isCipherNameByte(s[l]) {
				l++
			}
			if l == nameStart {
				return fmt.Errorf("invalid cipher string %q at %q", s, s[start:])
			}
			name := s[nameStart:l]
			if op == opSpecial {
				if err := st.special(name, res); err != nil {
					return err
				}
				break
			}
			multi := l < len(s) && s[l] == '+'
			if multi {
				l++
			}
			n, ok := lookupCipher(name)
			if !ok || !m.and(n) {
				found = false
				break
			}
			if !multi {
				break
			}
		}
		// Whatever is left of the element (after an unknown part, or
		// after a special command) is skipped.
		for l < len(s) && !isCipherSep(s[l]) {
			l++
		}
		if op == opSpecial {
			continue
		}
		if !found {
			m = cipherMatch{id: 0xffff} // matches nothing
		}
		st.rule(op, m)
		if op == opAdd && !quiet {
			st.note(s[start:l], m, found, res)
		}
	}
	return nil
}

// special runs "@STRENGTH" or "@SECLEVEL=n".
func (st *cipherState) special(name string, res *CipherList) error {
	switch {
	case name == "STRENGTH":
		st.strengthSort()
	case len(name) == len("SECLEVEL=n") && strings.HasPrefix(name, "SECLEVEL=") && name[9] >= '0' && name[9] <= '5':
		res.SecLevel = int(name[9] - '0')
	default:
		return fmt.Errorf("invalid command \"@%s\" in cipher string", name)
	}
	return nil
}

// note records an added element that brings in no suite crypto/tls will
// enable.
func (st *cipherState) note(elem string, m cipherMatch, found bool, res *CipherList) {
	var hits []int
	if found {
		if m.id != 0 {
			st.explicit[m.id] = true
		}
		for i := range cipherTable {
			if m.matches(&cipherTable[i]) {
				hits = append(hits, i)
			}
		}
	}
	if len(hits) == 0 {
		if !slices.Contains(res.Unsupported, elem) {
			res.Unsupported = append(res.Unsupported, elem)
		}
		return
	}
	for _, i := range hits {
		if id := cipherTable[i].id; secureSuites[id] || st.explicit[id] {
			return
		}
	}
	if !slices.Contains(res.Insecure, elem) {
		res.Insecure = append(res.Insecure, elem)
	}
}

// rule applies one element to the list as OpenSSL's ssl_cipher_apply_rule
// does.
func (st *cipherState) rule(op ruleOp, m cipherMatch) {
	var moved, kept []int
	for _, i := range st.order {
		hit := m.matches(&cipherTable[i])
		switch {
		case !hit:
			kept = append(kept, i)
		case op == opAdd && !st.active[i], op == opOrd && st.active[i]:
			st.active[i] = true
			moved = append(moved, i)
		case op == opDel && st.active[i]:
			st.active[i] = false
			moved = append(moved, i)
		case op == opKill:
			st.active[i] = false
		default:
			kept = append(kept, i)
		}
	}
	switch op {
	case opDel: // the suites taken out come first if added again
		st.order = append(moved, kept...)
	default:
		st.order = append(kept, moved...)
	}
}

// strengthSort orders the enabled suites by key length, longest first,
// keeping the order of suites of the same length (@STRENGTH).
func (st *cipherState) strengthSort() {
	var active, inactive []int
	for _, i := range st.order {
		if st.active[i] {
			active = append(active, i)
		} else {
			inactive = append(inactive, i)
		}
	}
	slices.SortStableFunc(active, func(a, b int) int { return cipherTable[b].bits - cipherTable[a].bits })
	st.order = append(inactive, active...)
}

// CipherName returns the OpenSSL name of a crypto/tls suite of TLS 1.0 to
// 1.2, such as "ECDHE-RSA-AES128-GCM-SHA256" for
// tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, or "" for a suite no cipher
// string can select (SuiteName names TLS 1.3's too).
func CipherName(id uint16) string {
	for _, c := range cipherTable {
		if c.id == id {
			return c.name
		}
	}
	return ""
}

// SuiteName returns OpenSSL's name of a suite crypto/tls negotiated, as
// SSL_get_cipher_name gives it (nginx's $ssl_cipher and Auth-SSL-Cipher):
// the CipherName of a TLS 1.0–1.2 suite, such as
// "ECDHE-RSA-AES128-GCM-SHA256", and for a TLS 1.3 suite its standard
// name, which OpenSSL and crypto/tls share, such as
// "TLS_AES_256_GCM_SHA384". It returns "" for a suite crypto/tls does not
// have.
func SuiteName(id uint16) string {
	switch id {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256:
		return tls.CipherSuiteName(id)
	}
	return CipherName(id)
}
