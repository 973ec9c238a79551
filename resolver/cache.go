package resolver

import (
	"container/list"
	"sync"
	"time"
)

// cacheKey is a question: a name (lower-case, with the final dot) and a type.
type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	ans     *answer
	expires time.Time
}

// cache keeps answers until they expire, dropping the least recently used
// when it is full.
type cache struct {
	mu      sync.Mutex
	size    int
	lru     list.List // of *cacheEntry, most recently used first
	entries map[cacheKey]*list.Element
}

func newCache(size int) *cache {
	return &cache{size: size, entries: make(map[cacheKey]*list.Element)}
}

// get returns the answer to k if it is still valid at now.
func (c *cache) get(k cacheKey, now time.Time) (*answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.remove(el)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e.ans, true
}

// put keeps ans as the answer to k until expires.
func (c *cache) put(k cacheKey, ans *answer, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.remove(el)
	}
	c.entries[k] = c.lru.PushFront(&cacheEntry{key: k, ans: ans, expires: expires})
	for c.lru.Len() > c.size {
		c.remove(c.lru.Back())
	}
}

func (c *cache) remove(el *list.Element) {
	delete(c.entries, el.Value.(*cacheEntry).key)
	c.lru.Remove(el)
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
