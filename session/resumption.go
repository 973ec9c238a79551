package session

import (
	"container/list"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"sync"
	"time"
)

// defaultSessionTimeout is Resumption.Timeout when zero: OpenSSL's and
// nginx's ssl_session_timeout.
const defaultSessionTimeout = 5 * time.Minute

// Resumption says how a server resumes TLS sessions, the ssl_session_*
// directives: Apply sets it on a tls.Config. Its zero value resumes no
// session.
//
// With Tickets, crypto/tls issues stateless tickets, encrypted with
// TicketKeys when set, and a ticket older than Timeout is refused (its
// time of issue travels inside the encrypted ticket, where a client cannot
// change it). crypto/tls has no session IDs: a client that does not take
// tickets is not resumed, whatever the Cache.
//
// Without Tickets and with a Cache, sessions are kept in the Cache and
// the ticket a client gets is a random 32-byte ID of its session: a
// stateful ticket, as OpenSSL issues for TLS 1.3 in the same case.
//
// Without Tickets nor Cache, sessions are not resumed.
type Resumption struct {
	// Tickets issues stateless session tickets (ssl_session_tickets).
	Tickets bool
	// TicketKeys encrypt the tickets (ssl_session_ticket_key): the first
	// encrypts new tickets, and all decrypt. To rotate keys, put the new
	// one first and keep the old ones until their tickets have expired.
	// Nil means crypto/tls's own keys, which it rotates daily and which
	// no other tls.Config shares.
	TicketKeys [][32]byte
	// Cache keeps sessions when Tickets is off (ssl_session_cache). Give
	// several servers one Cache and they resume each other's sessions.
	Cache *SessionCache
	// Timeout is how long a session can be resumed
	// (ssl_session_timeout). Zero means 5 minutes; crypto/tls refuses
	// sessions older than 7 days, whatever the Timeout.
	Timeout time.Duration
}

// Apply sets the resumption of cfg: SetSessionTicketKeys, WrapSession and
// UnwrapSession, or SessionTicketsDisabled. Time comes from cfg.Time when
// set. The functions it sets refer to cfg itself: a clone of cfg
// (tls.Config.Clone) keeps encrypting tickets with cfg's keys and reading
// cfg's clock.
func (r Resumption) Apply(cfg *tls.Config) {
	now := func() time.Time {
		if cfg.Time != nil {
			return cfg.Time()
		}
		return time.Now()
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = defaultSessionTimeout
	}
	switch {
	case r.Tickets:
		if len(r.TicketKeys) > 0 {
			cfg.SetSessionTicketKeys(r.TicketKeys)
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
			if !ok || now().Sub(created) > timeout {
				return nil, nil // a full handshake
			}
			return ss, nil
		}
	case r.Cache != nil:
		c := r.Cache
		cfg.WrapSession = func(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			state, err := ss.Bytes()
			if err != nil {
				return nil, err
			}
			return c.put(state, now().Add(timeout))
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

// A SessionCache keeps TLS sessions on the server, by random ID, for
// Resumption.Cache. It is bounded: when it is full, the oldest session
// leaves first. It lives in memory, so sessions do not outlive it. It is
// safe for concurrent use, by several tls.Configs.
type SessionCache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *cachedSession, oldest first
	entries map[string]*list.Element
}

type cachedSession struct {
	id      string
	state   []byte
	expires time.Time
}

// NewSessionCache returns a cache of at most maxSessions sessions (at
// least one).
func NewSessionCache(maxSessions int) *SessionCache {
	return &SessionCache{max: max(maxSessions, 1), order: list.New(), entries: map[string]*list.Element{}}
}

// put keeps a session's state until expires and returns its new ID.
func (c *SessionCache) put(state []byte, expires time.Time) ([]byte, error) {
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
func (c *SessionCache) get(id []byte, now time.Time) []byte {
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

func (c *SessionCache) remove(e *list.Element) {
	delete(c.entries, e.Value.(*cachedSession).id)
	c.order.Remove(e)
}
