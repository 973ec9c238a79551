// Package openssl is a pure-Go reading of OpenSSL's notations and file
// formats, for Go programs that take the TLS settings of nginx or of
// another OpenSSL user: cipher strings, group lists, protocol names and
// configuration commands (SSL_CONF_cmd, nginx's ssl_conf_command) become
// the values of a tls.Config, and the PEM files that OpenSSL's tools
// write (certificate chains, private keys, encrypted ones included, CRLs,
// DH parameters) become crypto/x509 and crypto/tls values. It uses no cgo
// and needs no OpenSSL library.
//
// What crypto/tls cannot do is reported rather than failed: a cipher
// string's suites that crypto/tls lacks are listed in
// CipherList.Unsupported, the groups it lacks are returned apart by
// ParseGroups, and a configuration command or option it does not honour
// is listed in ConfCommand.Ignored.
//
// The main entry points are ParseCipherString, ParseGroups,
// ParseConfCommand, ProtocolVersion, ParseCertificates, ParsePrivateKey,
// KeyPair and ParseCRLs.
package openssl
