package config

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file maps session resumption: ssl_session_cache,
// ssl_session_timeout, ssl_session_tickets and ssl_session_ticket_key.
//
// With tickets on (the default), crypto/tls issues stateless tickets,
// encrypted with the keys of ssl_session_ticket_key when set (else with
// keys of its own that it rotates daily), and a ticket older than
// ssl_session_timeout is refused. crypto/tls has no session IDs: a client
// that does not take tickets is not resumed, whatever ssl_session_cache
// says.
//
// With tickets off and a session cache (builtin or shared), the sessions
// are kept in memory here and the ticket a client gets is a random
// 32-byte ID of its session: a stateful ticket, as OpenSSL issues for TLS
// 1.3 in the same case. Servers that name the same shared zone share one
// cache. The cache lives as long as the loaded configuration: sessions do
// not survive a reload.
//
// With tickets off and no cache (ssl_session_cache off or none, the
// default), sessions are not resumed.

// Session cache sizes.
const (
	defaultSessionTimeout = 5 * time.Minute
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
	b, err := os.ReadFile(opts.path(v))
	if err != nil {
		return [32]byte{}, err
	}
	if len(b) != 48 && len(b) != 80 {
		return [32]byte{}, fmt.Errorf("%q must be 48 or 80 bytes", v)
	}
	return sha256.Sum256(b), nil
}

// sessionMode is how a server resumes sessions.
type sessionMode struct {
	tickets bool
	keys    [][32]byte // ssl_session_ticket_key, the first encrypting
	cache   *sessionCache
	timeout time.Duration
}

// apply sets cfg's resumption. Time comes from cfg.Time when set, so that
// tests can move the clock.
func (m sessionMode) apply(cfg *tls.Config) {
	now := func() time.Time {
		if cfg.Time != nil {
			return cfg.Time()
		}
		return time.Now()
	}
	switch {
	case m.tickets:
		if len(m.keys) > 0 {
			cfg.SetSessionTicketKeys(m.keys)
		}
		cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			ss.Extra = append(ss.Extra, createdEntry(now()))
			return cfg.EncryptTicket(cs, ss)
		}
		cfg.UnwrapSession = func(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := cfg.DecryptTicket(ticket, cs)
			if ss == nil || err != nil {
				return nil, err
			}
			created, ok := createdAt(ss.Extra)
			if !ok || now().Sub(created) > m.timeout {
				return nil, nil // a full handshake
			}
			return ss, nil
		}
	case m.cache != nil:
		c := m.cache
		cfg.WrapSession = func(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			state, err := ss.Bytes()
			if err != nil {
				return nil, err
			}
			return c.put(state, now().Add(m.timeout))
		}
		cfg.UnwrapSession = func(id []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
			state := c.get(id, now())
			if state == nil {
				return nil, nil
			}
			ss, err := tls.ParseSessionState(state)
			if err != nil {
				return nil, nil
			}
			return ss, nil
		}
	default:
		cfg.SessionTicketsDisabled = true
	}
}

// createdTag starts the SessionState.Extra entry that holds a ticket's
// creation time, inside the encrypted ticket where a client cannot change
// it.
const createdTag = "mailproxy created "

func createdEntry(t time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte(createdTag), uint64(t.UnixNano()))
}

func createdAt(extra [][]byte) (time.Time, bool) {
	for _, e := range extra {
		if len(e) == len(createdTag)+8 && string(e[:len(createdTag)]) == createdTag {
			return time.Unix(0, int64(binary.BigEndian.Uint64(e[len(createdTag):]))), true
		}
	}
	return time.Time{}, false
}

// sessionCache keeps sessions by random ID, the oldest leaving first when
// it is full.
type sessionCache struct {
	mu      sync.Mutex
	max     int
	size    int // bytes of a shared zone, to check that its servers agree
	order   *list.List
	entries map[string]*list.Element
}

type cachedSession struct {
	id      string
	state   []byte
	expires time.Time
}

func newSessionCache(max int) *sessionCache {
	return &sessionCache{max: max, order: list.New(), entries: map[string]*list.Element{}}
}

func (c *sessionCache) put(state []byte, expires time.Time) ([]byte, error) {
	id := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, id); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.order.Len() >= c.max {
		c.remove(c.order.Front())
	}
	c.entries[string(id)] = c.order.PushBack(&cachedSession{id: string(id), state: state, expires: expires})
	return id, nil
}

// get returns the state of a session that has not expired, or nil.
func (c *sessionCache) get(id []byte, now time.Time) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[string(id)]
	if !ok {
		return nil
	}
	s := e.Value.(*cachedSession)
	if now.After(s.expires) {
		c.remove(e)
		return nil
	}
	return s.state
}

func (c *sessionCache) remove(e *list.Element) {
	delete(c.entries, e.Value.(*cachedSession).id)
	c.order.Remove(e)
}

// len returns the number of sessions kept.
func (c *sessionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
