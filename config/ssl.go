package config

import (
	"crypto"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailproxy/mailproxy/openssl"
	"github.com/mailproxy/mailproxy/session"
)

// This file maps starttls and the ssl_* directives onto session.TLS, its
// tls.Config and session.Resumption, per server, inherited from the mail
// block as nginx merges them: a server's own directive replaces the mail
// block's, and the first of a repeatable one (ssl_certificate,
// ssl_certificate_key, ssl_session_ticket_key, ssl_conf_command) replaces
// the whole inherited list. Errors are worded and placed as nginx's.
//
// The machinery lives elsewhere: package openssl reads OpenSSL's
// notations (cipher strings, group lists, protocol names, SSL_CONF_cmd
// commands) and files (certificates, keys, CRLs), and session.Resumption
// runs session resumption. What is left here is the table below: which
// directive sets which field, nginx's defaults, the files read relative
// to the prefix when the configuration is loaded (sslfiles.go), and a
// warning naming what crypto/tls cannot do, which is accepted rather
// than refused.
//
//	directive                  tls.Config / session.TLS                  read by
//	ssl_certificate(_key)      Certificates (one per pair; crypto/tls    openssl.ParseCertificates, ParsePrivateKey, KeyPair
//	                           picks the one the client supports)
//	ssl_password_file          passphrases for encrypted keys            readPasswords (nginx's format)
//	ssl_protocols              MinVersion, MaxVersion                    openssl.ProtocolVersion
//	ssl_ciphers                CipherSuites (TLS 1.0–1.2)                openssl.ParseCipherString
//	ssl_prefer_server_ciphers  always on in crypto/tls
//	ssl_ecdh_curve             CurvePreferences                          openssl.ParseGroups
//	ssl_dhparam                checked, unused (no finite-field DHE)     openssl.CheckDHParams
//	ssl_session_*              session.Resumption (see tickets.go)
//	ssl_verify_client          TLS.Verify
//	ssl_verify_depth           TLS.VerifyDepth
//	ssl_client_certificate     TLS.ClientCAs                             openssl.ParseCertificates
//	ssl_trusted_certificate    TLS.TrustedCAs                            openssl.ParseCertificates
//	ssl_crl                    TLS.CRLs                                  openssl.ParseCRLs
//	ssl_conf_command           the above, applied after the directives   openssl.ParseConfCommand
//	                           (Certificate and PrivateKey paired here;
//	                           a Certificate replaces the pair with a key
//	                           of its type)
//	starttls                   TLS.StartTLS

// sslSettings are the TLS directives in force for a block.
type sslSettings struct {
	startTLS   session.StartTLS
	startTLSAt *Directive

	certs, keys  []*Directive
	passwordFile *Directive

	protocols   []uint16 // openssl.ProtocolVersion numbers, sorted; nil means nginx's default
	protocolsAt *Directive
	ciphers     []uint16      // nil means the default, crypto/tls's own
	curves      []tls.CurveID // nil means auto, crypto/tls's own
	dhparam     *Directive
	commands    []confCommand

	cache      sessionCacheSpec
	timeout    time.Duration // 0 means 5m
	ticketsOff bool
	ticketKeys []*Directive

	verify                       session.VerifyClient
	verifyAt                     *Directive
	verifyDepth                  int
	verifyDepthSet               bool
	clientCert, trustedCert, crl *Directive
}

// addSSL registers starttls and the ssl_* directives.
func addSSL() {
	for name, sp := range map[string]spec{
		"starttls":                  {min: 1, max: 1, set: setStartTLS},
		"ssl_certificate":           {min: 1, max: 1, multi: true, set: sslList(func(t *sslSettings) *[]*Directive { return &t.certs })},
		"ssl_certificate_key":       {min: 1, max: 1, multi: true, set: sslList(func(t *sslSettings) *[]*Directive { return &t.keys })},
		"ssl_password_file":         {min: 1, max: 1, set: func(s *settings, d *Directive) error { s.ssl.passwordFile = d; return nil }},
		"ssl_protocols":             {min: 1, max: -1, set: setSSLProtocols},
		"ssl_ciphers":               {min: 1, max: 1, set: setSSLCiphers},
		"ssl_prefer_server_ciphers": {min: 1, max: 1, set: setPreferServerCiphers},
		"ssl_ecdh_curve":            {min: 1, max: 1, set: setECDHCurve},
		"ssl_dhparam":               {min: 1, max: 1, set: setDHParam},
		"ssl_conf_command":          {min: 2, max: 2, multi: true, set: setConfCommand},
		"ssl_session_cache":         {min: 1, max: 2, set: func(s *settings, d *Directive) error { return parseSessionCache(&s.ssl.cache, d) }},
		"ssl_session_timeout":       {min: 1, max: 1, set: setSessionTimeout},
		"ssl_session_tickets":       {min: 1, max: 1, set: setSessionTickets},
		"ssl_session_ticket_key":    {min: 1, max: 1, multi: true, set: sslList(func(t *sslSettings) *[]*Directive { return &t.ticketKeys })},
		"ssl_verify_client":         {min: 1, max: 1, set: setVerifyClient},
		"ssl_verify_depth":          {min: 1, max: 1, set: setVerifyDepth},
		"ssl_client_certificate":    {min: 1, max: 1, set: func(s *settings, d *Directive) error { s.ssl.clientCert = d; return nil }},
		"ssl_trusted_certificate":   {min: 1, max: 1, set: func(s *settings, d *Directive) error { s.ssl.trustedCert = d; return nil }},
		"ssl_crl":                   {min: 1, max: 1, set: func(s *settings, d *Directive) error { s.ssl.crl = d; return nil }},
	} {
		sp.where = anywhere
		directives[name] = sp
	}
}

// sslList keeps a repeatable directive; the first in a block replaces the
// inherited ones.
func sslList(field func(*sslSettings) *[]*Directive) func(*settings, *Directive) error {
	return func(s *settings, d *Directive) error {
		list := field(&s.ssl)
		if !s.seen[d.Name] {
			*list = nil
		}
		*list = append(slices.Clip(*list), d)
		return nil
	}
}

func setStartTLS(s *settings, d *Directive) error {
	modes := map[string]session.StartTLS{"off": session.StartTLSOff, "on": session.StartTLSOn, "only": session.StartTLSOnly}
	mode, ok := modes[d.Args[0]]
	if !ok {
		return fmt.Errorf("invalid value %q", d.Args[0])
	}
	s.ssl.startTLS, s.ssl.startTLSAt = mode, d
	return nil
}

// defaultProtocols is nginx's ssl_protocols.
var defaultProtocols = []uint16{tls.VersionTLS12, tls.VersionTLS13}

// protocolList names versions.
func protocolList(versions []uint16) string {
	names := make([]string, len(versions))
	for i, v := range versions {
		names[i] = openssl.ProtocolName(v)
	}
	return strings.Join(names, " ")
}

func setSSLProtocols(s *settings, d *Directive) error {
	var versions []uint16
	for _, v := range d.Args {
		version, ok := openssl.ProtocolVersion(v)
		if !ok {
			return fmt.Errorf("invalid value %q", v)
		}
		versions = append(versions, version)
	}
	slices.Sort(versions)
	versions = slices.Compact(versions)
	if old, _ := slices.BinarySearch(versions, tls.VersionTLS10); old > 0 {
		s.tlsLoad.warn(d, "SSL versions are never offered: crypto/tls has only TLS", "ignored", protocolList(versions[:old]))
	}
	s.ssl.protocols, s.ssl.protocolsAt = versions, d
	return nil
}

// warnCiphers names what a cipher string asks that crypto/tls will not do.
func (ld *tlsLoad) warnCiphers(d *Directive, l openssl.CipherList) {
	if len(l.Unsupported) > 0 {
		ld.warn(d, "ciphers crypto/tls does not have are left out", "ciphers", strings.Join(l.Unsupported, " "))
	}
	if len(l.Insecure) > 0 {
		ld.warn(d, "insecure ciphers are left out unless named one by one", "ciphers", strings.Join(l.Insecure, " "))
	}
	if l.SecLevel >= 0 {
		ld.warn(d, "@SECLEVEL is not applied: crypto/tls has its own key and signature policy", "seclevel", l.SecLevel)
	}
}

// defaultCiphers is nginx's ssl_ciphers.
const defaultCiphers = "HIGH:!aNULL:!MD5"

// setSSLCiphers reads an OpenSSL cipher string. nginx's default,
// HIGH:!aNULL:!MD5, is what crypto/tls enables by default, so it leaves
// CipherSuites nil.
func setSSLCiphers(s *settings, d *Directive) error {
	l, err := openssl.ParseCipherString(d.Args[0])
	if err != nil {
		return err
	}
	s.tlsLoad.warnCiphers(d, l)
	s.ssl.ciphers = l.CipherSuites
	if d.Args[0] == defaultCiphers {
		s.ssl.ciphers = nil
	}
	return nil
}

const noClientPreference = "the client's cipher preference is not followed: crypto/tls always chooses by its own order"

// setPreferServerCiphers reads ssl_prefer_server_ciphers: crypto/tls
// always chooses the cipher itself, so "on" is what it does anyway (by
// its own preference order, not by the order of ssl_ciphers).
func setPreferServerCiphers(s *settings, d *Directive) error {
	on, err := parseFlag(d.Args[0])
	if err == nil && !on {
		s.tlsLoad.warn(d, noClientPreference)
	}
	return err
}

func (ld *tlsLoad) warnCurves(d *Directive, unknown []string) {
	if len(unknown) > 0 {
		ld.warn(d, "curves crypto/tls does not have are left out", "curves", strings.Join(unknown, " "))
	}
}

// setECDHCurve reads an OpenSSL group list; "auto" leaves
// CurvePreferences nil: crypto/tls's own list.
func setECDHCurve(s *settings, d *Directive) error {
	if d.Args[0] == "auto" {
		s.ssl.curves = nil
		return nil
	}
	curves, unknown, err := openssl.ParseGroups(d.Args[0])
	if err != nil {
		return err
	}
	s.tlsLoad.warnCurves(d, unknown)
	s.ssl.curves = curves
	return nil
}

func setDHParam(s *settings, d *Directive) error {
	s.tlsLoad.warn(d, "DH parameters are not used: crypto/tls has no finite-field DHE")
	s.ssl.dhparam = d
	return nil
}

// maxSessionLifetime is how long crypto/tls lets a session be resumed.
const maxSessionLifetime = 7 * 24 * time.Hour

func setSessionTimeout(s *settings, d *Directive) error {
	v, err := parseTime(d.Args[0])
	if err != nil {
		return err
	}
	if v > maxSessionLifetime {
		s.tlsLoad.warn(d, "sessions are resumed for at most 7 days: crypto/tls refuses older ones")
	}
	s.ssl.timeout = v
	if v == 0 {
		s.ssl.timeout = time.Nanosecond // expired at once, as in OpenSSL
	}
	return nil
}

func setSessionTickets(s *settings, d *Directive) error {
	on, err := parseFlag(d.Args[0])
	s.ssl.ticketsOff = !on
	return err
}

func setVerifyClient(s *settings, d *Directive) error {
	modes := map[string]session.VerifyClient{"off": session.VerifyOff, "on": session.VerifyOn,
		"optional": session.VerifyOptional, "optional_no_ca": session.VerifyOptionalNoCA}
	mode, ok := modes[d.Args[0]]
	if !ok {
		return fmt.Errorf("invalid value %q", d.Args[0])
	}
	s.ssl.verify, s.ssl.verifyAt = mode, d
	return nil
}

func setVerifyDepth(s *settings, d *Directive) error {
	n, err := parseCount(d.Args[0])
	if err != nil {
		return err
	}
	if n == 0 {
		s.tlsLoad.warn(d, "a depth of 0 is taken as 1: the client's certificate and its issuer")
		n = 1
	}
	s.ssl.verifyDepth, s.ssl.verifyDepthSet = n, true
	return nil
}

// tlsLoad is what the servers of one Load share: the certificates read,
// the shared session caches, the warnings logged.
type tlsLoad struct {
	opts   Options
	pairs  map[[3]string]tls.Certificate // by certificate, key and password file
	zones  map[string]sharedZone
	warned map[string]bool
}

// sharedZone is the session cache of an ssl_session_cache shared:name:size.
type sharedZone struct {
	cache *session.SessionCache
	size  int // bytes, which every server naming the zone must agree on
}

func newTLSLoad(opts Options) *tlsLoad {
	return &tlsLoad{opts: opts, pairs: map[[3]string]tls.Certificate{}, zones: map[string]sharedZone{}, warned: map[string]bool{}}
}

// warn logs what a directive asks that is not honoured, once per Load.
func (ld *tlsLoad) warn(d *Directive, msg string, attrs ...any) {
	key := fmt.Sprint(d.Pos(), d.Name, msg, attrs)
	if ld.warned[key] {
		return
	}
	ld.warned[key] = true
	ld.opts.Logger.Warn(msg, append([]any{"directive", d.Name, "at", d.Pos()}, attrs...)...)
}

// firstListenSSL returns the first "listen … ssl" of a server block.
func firstListenSSL(block *Directive) *Directive {
	for _, d := range block.Block {
		if d.Name == "listen" && slices.Contains(d.Args[1:], "ssl") {
			return d
		}
	}
	return nil
}

// buildTLS returns the TLS settings of a server: nil when it has no
// certificate, which is an error if it has a "listen … ssl" or starttls.
func (s *settings) buildTLS(block *Directive) (*session.TLS, error) {
	t, ld := &s.ssl, s.tlsLoad
	if len(t.certs) == 0 {
		if d := firstListenSSL(block); d != nil {
			return nil, errorAt(d, `no "ssl_certificate" is defined for the "listen ... ssl" directive`)
		}
		if t.startTLS != session.StartTLSOff {
			return nil, errorAt(t.startTLSAt, `no "ssl_certificate" is defined for the "starttls" directive`)
		}
		for _, k := range t.keys {
			ld.warn(k, "not used: no ssl_certificate goes with it")
		}
		return nil, nil
	}
	b := &tlsBuild{ld: ld, t: t, cfg: &tls.Config{}, protocols: t.protocols, ciphers: t.ciphers, curves: t.curves, tickets: !t.ticketsOff}
	if b.protocols == nil {
		b.protocols = defaultProtocols
	}
	steps := []func() error{b.certificates, b.commands, b.versions, b.verify, b.files, b.sessions}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	b.cfg.CipherSuites = b.ciphers
	b.cfg.CurvePreferences = b.curves
	b.tls.Config = b.cfg
	b.tls.StartTLS = t.startTLS
	return &b.tls, nil
}

// tlsBuild holds a server's TLS settings while they are built.
type tlsBuild struct {
	ld  *tlsLoad
	t   *sslSettings
	cfg *tls.Config
	tls session.TLS

	protocols    []uint16
	minVersion   uint16 // MinProtocol, MaxProtocol; 0 means none
	maxVersion   uint16
	minAt, maxAt *Directive
	ciphers      []uint16
	curves       []tls.CurveID
	tickets      bool
	passwords    []string
	pwFile       string
}

// certificates loads the ssl_certificate and ssl_certificate_key pairs.
func (b *tlsBuild) certificates() error {
	t := b.t
	if t.passwordFile != nil {
		pws, err := readPasswords(b.ld.opts, t.passwordFile.Args[0])
		if err != nil {
			return errorAt(t.passwordFile, fmt.Sprintf("cannot read password file: %v", err))
		}
		b.passwords, b.pwFile = pws, t.passwordFile.Args[0]
	}
	if len(t.keys) < len(t.certs) { // nginx names the last certificate
		c := t.certs[len(t.certs)-1]
		return errorAt(c, fmt.Sprintf(`no "ssl_certificate_key" is defined for certificate "%s"`, fileLabel(c.Args[0])))
	}
	for i, c := range t.certs {
		if err := b.addPair(c, c.Args[0], t.keys[i], t.keys[i].Args[0]); err != nil {
			return err
		}
	}
	for _, k := range t.keys[len(t.certs):] {
		b.ld.warn(k, "not used: no ssl_certificate goes with it")
	}
	return nil
}

// addPair loads a certificate and its key and adds them.
func (b *tlsBuild) addPair(certAt *Directive, certV string, keyAt *Directive, keyV string) error {
	pair, err := b.loadPair(certAt, certV, keyAt, keyV)
	if err != nil {
		return err
	}
	b.cfg.Certificates = append(b.cfg.Certificates, pair)
	return nil
}

// loadPair loads a certificate and its key, once per Load.
func (b *tlsBuild) loadPair(certAt *Directive, certV string, keyAt *Directive, keyV string) (tls.Certificate, error) {
	cacheKey := [3]string{certV, keyV, b.pwFile}
	if pair, ok := b.ld.pairs[cacheKey]; ok {
		return pair, nil
	}
	chain, err := loadCertChain(b.ld.opts, certV)
	if err != nil {
		return tls.Certificate{}, errorAt(certAt, err.Error())
	}
	key, err := loadPrivateKey(b.ld.opts, keyV, b.passwords, b.pwFile)
	if err != nil {
		return tls.Certificate{}, errorAt(keyAt, err.Error())
	}
	pair, err := keyPair(chain, key, certV, keyV)
	if err != nil {
		return tls.Certificate{}, errorAt(keyAt, err.Error())
	}
	b.ld.pairs[cacheKey] = pair
	return pair, nil
}

// replacePair puts pair in the place of the pairs with a key of its type,
// or adds it when there is none: OpenSSL holds one certificate for each
// type of key (RSA, ECDSA, Ed25519), and the Certificate command of
// SSL_CONF_cmd replaces the one of its type, ssl_certificate's included.
func (b *tlsBuild) replacePair(pair tls.Certificate) {
	var kept []tls.Certificate
	placed := false
	for _, c := range b.cfg.Certificates {
		switch {
		case c.Leaf.PublicKeyAlgorithm != pair.Leaf.PublicKeyAlgorithm:
			kept = append(kept, c)
		case !placed:
			kept, placed = append(kept, pair), true
		}
	}
	if !placed {
		kept = append(kept, pair)
	}
	b.cfg.Certificates = kept
}

// versions sets MinVersion and MaxVersion from ssl_protocols, narrowed by
// MinProtocol and MaxProtocol.
func (b *tlsBuild) versions() error {
	var enabled, goVersions []uint16
	for _, v := range b.protocols {
		if b.minVersion != 0 && v < b.minVersion || b.maxVersion != 0 && v > b.maxVersion {
			continue
		}
		enabled = append(enabled, v)
		if v >= tls.VersionTLS10 {
			goVersions = append(goVersions, v)
		}
	}
	at := b.t.protocolsAt
	for _, d := range []*Directive{b.minAt, b.maxAt} {
		if at == nil {
			at = d
		}
	}
	if len(goVersions) == 0 {
		msg := "no TLS version is enabled"
		if len(enabled) > 0 {
			msg += " (only " + protocolList(enabled) + ")"
		}
		return errorAt(at, msg)
	}
	lo, hi := goVersions[0], goVersions[len(goVersions)-1]
	b.cfg.MinVersion, b.cfg.MaxVersion = lo, hi
	if int(hi-lo)+1 != len(goVersions) { // TLS versions are numbered one after the other
		var span []uint16
		for v := lo; v <= hi; v++ {
			span = append(span, v)
		}
		b.ld.warn(at, "crypto/tls takes a range of versions: the versions between are enabled too", "enabled", protocolList(span))
	}
	return nil
}

// verify sets the client certificate check.
func (b *tlsBuild) verify() error {
	t := b.t
	b.tls.Verify = t.verify
	b.tls.VerifyDepth = 1
	if t.verifyDepthSet {
		b.tls.VerifyDepth = t.verifyDepth
	}
	if t.verify == session.VerifyOff {
		return nil
	}
	if t.verify != session.VerifyOptionalNoCA && t.clientCert == nil && t.trustedCert == nil {
		return errorAt(t.verifyAt, "no ssl_client_certificate or ssl_trusted_certificate for ssl_verify_client")
	}
	var err error
	if d := t.clientCert; d != nil {
		if b.tls.ClientCAs, err = loadCAs(b.ld.opts, d.Args[0]); err != nil {
			return errorAt(d, err.Error())
		}
	}
	if d := t.trustedCert; d != nil {
		if b.tls.TrustedCAs, err = loadCAs(b.ld.opts, d.Args[0]); err != nil {
			return errorAt(d, err.Error())
		}
	}
	if d := t.crl; d != nil {
		if b.tls.CRLs, err = loadCRLs(b.ld.opts, d.Args[0]); err != nil {
			return errorAt(d, err.Error())
		}
	}
	return nil
}

// files checks ssl_dhparam.
func (b *tlsBuild) files() error {
	if d := b.t.dhparam; d != nil {
		if err := checkDHParam(b.ld.opts, d.Args[0]); err != nil {
			return errorAt(d, err.Error())
		}
	}
	return nil
}

// sessions sets resumption (see tickets.go).
func (b *tlsBuild) sessions() error {
	t := b.t
	r := session.Resumption{Tickets: b.tickets, Timeout: t.timeout}
	for _, d := range t.ticketKeys {
		key, err := readTicketKey(b.ld.opts, d.Args[0])
		if err != nil {
			return errorAt(d, err.Error())
		}
		r.TicketKeys = append(r.TicketKeys, key)
	}
	var zone *session.SessionCache
	if c := t.cache; c.zone != "" {
		z, ok := b.ld.zones[c.zone]
		switch {
		case !ok:
			z = sharedZone{cache: session.NewSessionCache(c.size / sharedBytesPerSession), size: c.size}
			b.ld.zones[c.zone] = z
		case z.size != c.size:
			return errorAt(c.at, fmt.Sprintf("the size %d of shared memory zone %q conflicts with already declared size %d", c.size, c.zone, z.size))
		}
		zone = z.cache
	}
	if !r.Tickets && t.cache.enabled() {
		r.Cache = zone
		if r.Cache == nil {
			r.Cache = session.NewSessionCache(t.cache.builtin)
		}
	}
	r.Apply(b.cfg)
	return nil
}

// A confCommand is one ssl_conf_command, read when the directive is.
type confCommand struct {
	openssl.ConfCommand
	at      *Directive
	keyFile string     // for a Certificate: its PrivateKey command's file
	keyAt   *Directive // and that command
}

// setConfCommand reads one ssl_conf_command. A name OpenSSL does not
// know, or a value it would refuse, is an error, as in nginx; a command
// crypto/tls cannot honour is accepted with a warning.
func setConfCommand(s *settings, d *Directive) error {
	if !s.seen[d.Name] {
		s.ssl.commands = nil
	}
	name, value := d.Args[0], d.Args[1]
	c, err := openssl.ParseConfCommand(name, value)
	if err != nil {
		return fmt.Errorf("SSL_CONF_cmd(%q, %q) failed: %w", name, value, err)
	}
	s.tlsLoad.warnConfCommand(d, c)
	s.ssl.commands = append(slices.Clip(s.ssl.commands), confCommand{ConfCommand: c, at: d})
	return nil
}

// warnConfCommand names what an ssl_conf_command asks that crypto/tls
// will not do.
func (ld *tlsLoad) warnConfCommand(d *Directive, c openssl.ConfCommand) {
	if c.Ciphers != nil {
		ld.warnCiphers(d, *c.Ciphers)
	}
	ld.warnCurves(d, c.UnsupportedCurves)
	switch {
	case len(c.Ignored) == 0:
	case c.Name == "Ciphersuites":
		ld.warn(d, "TLS 1.3 suites cannot be chosen: crypto/tls always enables "+strings.Join(openssl.TLS13CipherSuites(), " "), "ciphersuites", d.Args[1])
	case c.Name == "Options":
		ld.warn(d, "OpenSSL options not honoured by crypto/tls", "options", strings.Join(c.Ignored, " "))
	default:
		ld.warn(d, "OpenSSL command not honoured by crypto/tls", "command", c.Name)
	}
}

// commands applies the ssl_conf_command list after the directives, as
// OpenSSL applies them last.
func (b *tlsBuild) commands() error {
	var certs []confCommand // Certificate commands, keys paired
	for _, c := range b.t.commands {
		switch c.Name {
		case "CipherString":
			b.ciphers = c.Ciphers.CipherSuites
		case "MinProtocol":
			b.minVersion, b.minAt = c.Version, c.at
		case "MaxProtocol":
			b.maxVersion, b.maxAt = c.Version, c.at
		case "Groups", "Curves":
			b.curves = c.Curves
		case "Options":
			if c.SessionTickets != nil {
				b.tickets = *c.SessionTickets
			}
		case "Certificate":
			certs = append(certs, c)
		case "PrivateKey":
			if len(certs) == 0 || certs[len(certs)-1].keyFile != "" {
				return errorAt(c.at, fmt.Sprintf("SSL_CONF_cmd(%q, %q) failed: no Certificate command before it", c.Name, c.File))
			}
			certs[len(certs)-1].keyFile, certs[len(certs)-1].keyAt = c.File, c.at
		}
	}
	for _, c := range certs {
		pair, err := b.commandPair(c)
		if err != nil {
			return err
		}
		b.replacePair(pair)
	}
	return nil
}

// commandPair loads the certificate of a Certificate command and its key:
// its PrivateKey command's; without one, the key the certificate's type
// has now when it matches, which OpenSSL keeps (a renewed certificate);
// else a key in the certificate file, where OpenSSL, as nginx sets it up,
// would leave the certificate without a key.
func (b *tlsBuild) commandPair(c confCommand) (tls.Certificate, error) {
	if c.keyFile != "" {
		return b.loadPair(c.at, c.File, c.keyAt, c.keyFile)
	}
	chain, err := loadCertChain(b.ld.opts, c.File)
	if err != nil {
		return tls.Certificate{}, errorAt(c.at, err.Error())
	}
	for _, p := range b.cfg.Certificates {
		if key, ok := p.PrivateKey.(crypto.Signer); ok {
			if pair, err := openssl.KeyPair(chain, key); err == nil {
				return pair, nil
			}
		}
	}
	return b.loadPair(c.at, c.File, c.at, c.File)
}
