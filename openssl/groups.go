package openssl

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// groupNames are the OpenSSL names of the groups crypto/tls has,
// lowercase.
var groupNames = map[string]tls.CurveID{
	"x25519":             tls.X25519,
	"p-256":              tls.CurveP256,
	"prime256v1":         tls.CurveP256,
	"secp256r1":          tls.CurveP256,
	"p-384":              tls.CurveP384,
	"secp384r1":          tls.CurveP384,
	"p-521":              tls.CurveP521,
	"secp521r1":          tls.CurveP521,
	"x25519mlkem768":     tls.X25519MLKEM768,
	"secp256r1mlkem768":  tls.SecP256r1MLKEM768,
	"secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
}

// ParseGroups reads an OpenSSL list of key exchange groups (curves), as
// SSL_CTX_set1_groups_list takes it: "X25519:prime256v1:secp384r1".
// Names are separated by ':' (or '/', which OpenSSL 3.5 uses between
// tuples), their case does not matter, and the prefixes '?' (ignore an
// unknown name) and '*' (send a key share) are dropped. The result is the
// value for tls.Config.CurvePreferences, each curve once; names crypto/tls
// does not have are returned apart. An error means that the list has no
// curve crypto/tls has.
//
// crypto/tls chooses among the curves by its own preference order, not
// the list's.
func ParseGroups(list string) (curves []tls.CurveID, unsupported []string, err error) {
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == '/' }) {
		id, ok := groupNames[strings.ToLower(strings.TrimLeft(name, "?*"))]
		switch {
		case !ok:
			unsupported = append(unsupported, name)
		case !slices.Contains(curves, id):
			curves = append(curves, id)
		}
	}
	if len(curves) == 0 {
		return nil, unsupported, fmt.Errorf("no curve crypto/tls supports in %q", list)
	}
	return curves, unsupported, nil
}
