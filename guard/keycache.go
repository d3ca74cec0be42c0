package guard

import (
	"crypto/sha256"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// keyHash identifies a cached credential: the SHA-256 of a token, or of an
// API key and the client address. The credential itself is never stored.
type keyHash [sha256.Size]byte

// hashToken returns the cache key of a bearer token.
func hashToken(raw string) keyHash {
	// A stack buffer: converting the string would allocate.
	var buf [2048]byte
	if len(raw) <= len(buf) {
		n := copy(buf[:], raw)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(raw))
}

// hashKey returns the cache key of key presented from ip. The address is
// part of it because a key's IP allow-list makes the answer depend on it.
func hashKey(key string, ip netip.Addr) keyHash {
	var buf [16 + 1 + maxKeyHeader]byte
	a := ip.As16()
	n := copy(buf[:], a[:])
	if ip.IsValid() {
		buf[n] = 1
	}
	n++
	n += copy(buf[n:], key)
	return sha256.Sum256(buf[:n])
}

// keyEntry is one cached answer, for an API key or a verified token.
type keyEntry struct {
	// active is true for an accepted key, with its principal.
	active    bool
	principal token.Principal
	// retryAfter is set on refusals for a rate limit: answer 429 until then.
	retryAfter time.Time
	// until is when the entry expires.
	until time.Time
}

// keyCache is a bounded map of answers. When full, it evicts expired
// entries and, if none, arbitrary ones (map iteration order). It is safe
// for concurrent use.
type keyCache struct {
	mu  sync.RWMutex
	max int
	m   map[keyHash]*keyEntry
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, m: make(map[keyHash]*keyEntry)}
}

// get returns the unexpired entry for h. Entries are never modified once
// stored.
func (c *keyCache) get(h keyHash, now time.Time) (*keyEntry, bool) {
	c.mu.RLock()
	e, ok := c.m[h]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e, true
}

// put stores e under h.
func (c *keyCache) put(h keyHash, e *keyEntry, now time.Time) {
	c.putIf(h, e, now, nil, 0)
}

// putIf stores e under h if gen is nil or still holds want. Revocations
// bump gen before they evict, so an answer checked against the revocation
// list before a revocation is never stored after its eviction.
func (c *keyCache) putIf(h keyHash, e *keyEntry, now time.Time, gen *atomic.Uint64, want uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != nil && gen.Load() != want {
		return
	}
	if _, ok := c.m[h]; !ok && len(c.m) >= c.max {
		for k, old := range c.m {
			if !now.Before(old.until) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[h] = e
}

// evict removes every entry for the API key with public id id (kind
// token.KindAPIKey) or the token whose "jti" is id (token.KindJWT).
func (c *keyCache) evict(kind token.Kind, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if kind == token.KindAPIKey && e.principal.KeyID == id || kind == token.KindJWT && e.principal.TokenID == id {
			delete(c.m, k)
		}
	}
}

// clear removes every entry.
func (c *keyCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

func (c *keyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
