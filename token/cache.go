package token

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// cacheShards spreads the cache over several locks.
const cacheShards = 16

// evictSample is how many entries a full shard looks at to pick one to
// evict: an expired one if any, else the one that expires first.
const evictSample = 8

// Cache remembers verified tokens for one [Verifier] (see
// [VerifierConfig.Cache]), so that a token presented again costs a SHA-256
// and a map lookup instead of a signature check.
//
// Entries are keyed by the SHA-256 of the whole token, never the token
// itself, and expire at the token's "exp". The cache holds at most a fixed
// number of entries; when full it evicts entries that expire soonest.
// A Cache is safe for concurrent use.
//
// Evicting with [Cache.RevokeID] does not stop the token from verifying
// again: callers that follow a revocation feed must still check "jti"
// against it (a token verified again is not cached if a revocation arrived
// while it was being verified).
type Cache struct {
	owner  atomic.Pointer[Verifier]
	gen    atomic.Uint64 // bumped by every revocation
	max    int           // entries per shard
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]*Claims
	byID    map[string][][sha256.Size]byte
}

// NewCache returns a cache that holds about maxEntries tokens (rounded up
// to a multiple of 16); maxEntries below 1 means 1024.
func NewCache(maxEntries int) *Cache {
	if maxEntries < 1 {
		maxEntries = 1024
	}
	c := &Cache{max: (maxEntries + cacheShards - 1) / cacheShards}
	for i := range c.shards {
		c.shards[i].entries = make(map[[sha256.Size]byte]*Claims)
		c.shards[i].byID = make(map[string][][sha256.Size]byte)
	}
	return c
}

func (c *Cache) shard(sum *[sha256.Size]byte) *cacheShard {
	return &c.shards[sum[0]%cacheShards]
}

// get returns a copy of the claims cached under sum if they have not
// expired at now.
func (c *Cache) get(sum *[sha256.Size]byte, now time.Time) (*Claims, bool) {
	s := c.shard(sum)
	s.mu.RLock()
	cl, ok := s.entries[*sum]
	s.mu.RUnlock()
	if !ok || now.Unix() >= cl.ExpiresAt {
		return nil, false
	}
	cp := *cl
	return &cp, true
}

// generation returns a number that changes with every revocation.
func (c *Cache) generation() uint64 {
	return c.gen.Load()
}

// add caches cl under sum unless it expires by now or a revocation
// happened since gen was read.
func (c *Cache) add(sum *[sha256.Size]byte, cl *Claims, gen uint64, now time.Time) {
	if now.Unix() >= cl.ExpiresAt {
		return
	}
	stored := *cl
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Checked under the lock: RevokeID bumps gen before taking any lock.
	if c.gen.Load() != gen {
		return
	}
	if _, ok := s.entries[*sum]; ok {
		return
	}
	if len(s.entries) >= c.max {
		s.evict(now.Unix())
	}
	s.entries[*sum] = &stored
	if stored.ID != "" {
		s.byID[stored.ID] = append(s.byID[stored.ID], *sum)
	}
}

// evict makes room in a full shard: it looks at a few entries in random
// order, removes those that have expired and, if none had, the one that
// expires first. The caller holds the lock.
func (s *cacheShard) evict(now int64) {
	var victim [sha256.Size]byte
	var victimExp int64
	found, removed, seen := false, 0, 0
	for k, cl := range s.entries {
		switch {
		case cl.ExpiresAt <= now:
			s.remove(k, cl)
			removed++
		case !found || cl.ExpiresAt < victimExp:
			victim, victimExp, found = k, cl.ExpiresAt, true
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if removed == 0 && found {
		s.remove(victim, s.entries[victim])
	}
}

// remove deletes the entry k, whose claims are cl. The caller holds the lock.
func (s *cacheShard) remove(k [sha256.Size]byte, cl *Claims) {
	delete(s.entries, k)
	keys := s.byID[cl.ID]
	for i, v := range keys {
		if v == k {
			keys = append(keys[:i], keys[i+1:]...)
			break
		}
	}
	if len(keys) == 0 {
		delete(s.byID, cl.ID)
	} else {
		s.byID[cl.ID] = keys
	}
}

// RevokeID evicts every cached token whose "jti" is jti, for example when
// it appears on the revocation feed.
func (c *Cache) RevokeID(jti string) {
	c.gen.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, k := range s.byID[jti] {
			delete(s.entries, k)
		}
		delete(s.byID, jti)
		s.mu.Unlock()
	}
}

// Clear evicts every entry, for example after a signing key was revoked.
func (c *Cache) Clear() {
	c.gen.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.entries)
		clear(s.byID)
		s.mu.Unlock()
	}
}

// Len returns the number of cached entries, including expired ones not yet
// evicted.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
