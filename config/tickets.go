package config

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// This file reads the directives of session resumption
// (ssl_session_cache, ssl_session_ticket_key) for session.Resumption,
// which runs it. With tickets off, a builtin cache is a server's own, and
// servers that name the same shared zone share one session.SessionCache.
// The caches live as long as the loaded configuration: sessions do not
// survive a reload. crypto/tls has no session IDs, so ssl_session_cache
// has no effect while tickets are on.

// Session cache sizes.
const (
	builtinCacheSessions  = 20480          // OpenSSL's default cache size
	sharedBytesPerSession = 1 << 20 / 4000 // nginx: 1 MB holds about 4000 sessions
)

// sessionCacheSpec is ssl_session_cache, merged as nginx merges its two
// halves: the builtin part and the shared zone.
type sessionCacheSpec struct {
	builtin int // cacheNone (the default), cacheOff, cacheNoBuiltin, or sessions
	zone    string
	size    int // bytes of the shared zone
	at      *Directive
}

const (
	cacheNone      = 0
	cacheOff       = -1
	cacheNoBuiltin = -2
)

// parseSessionCache reads "off | none | [builtin[:size]] [shared:name:size]"
// into spec, which holds the inherited value.
func parseSessionCache(spec *sessionCacheSpec, d *Directive) error {
	builtinSet, sharedSet := false, false
	for _, v := range d.Args {
		switch {
		case v == "off":
			spec.builtin, builtinSet = cacheOff, true
		case v == "none":
			spec.builtin, builtinSet = cacheNone, true
		case v == "builtin":
			spec.builtin, builtinSet = builtinCacheSessions, true
		case strings.HasPrefix(v, "builtin:") && len(v) > len("builtin:"):
			n, err := strconv.ParseUint(v[len("builtin:"):], 10, 31)
			if err != nil || n == 0 {
				return fmt.Errorf("invalid session cache %q", v)
			}
			spec.builtin, builtinSet = int(n), true
		case strings.HasPrefix(v, "shared:"):
			name, sz, ok := strings.Cut(v[len("shared:"):], ":")
			if !ok || name == "" {
				return fmt.Errorf("invalid session cache %q", v)
			}
			n, err := parseSize(sz)
			if err != nil {
				return fmt.Errorf("invalid session cache %q", v)
			}
			if n < 8*os.Getpagesize() {
				return fmt.Errorf("session cache %q is too small", v)
			}
			spec.zone, spec.size, sharedSet = name, n, true
		default:
			return fmt.Errorf("invalid session cache %q", v)
		}
	}
	if sharedSet && !builtinSet {
		spec.builtin = cacheNoBuiltin
	}
	spec.at = d
	return nil
}

// enabled reports whether sessions are cached.
func (c sessionCacheSpec) enabled() bool {
	return c.builtin > 0 || c.builtin == cacheNoBuiltin && c.zone != ""
}

// readTicketKey reads an ssl_session_ticket_key file: nginx's 48 or 80
// random bytes. crypto/tls wants 32 bytes, derived here as the SHA-256 of
// the file, so that a file keeps giving the same key.
func readTicketKey(opts Options, v string) ([32]byte, error) {
	b, err := readLimited(opts.files(), opts.path(v), v, maxPEMFile)
	if err != nil {
		return [32]byte{}, err
	}
	if len(b) != 48 && len(b) != 80 {
		return [32]byte{}, fmt.Errorf("%q must be 48 or 80 bytes", v)
	}
	return sha256.Sum256(b), nil
}
