package token

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// cachedFixture returns a fixture whose verifier uses a cache and clk.
func cachedFixture(t *testing.T, size int) (fixture, *Cache, *clock) {
	t.Helper()
	clk := &clock{now: testNow}
	cache := NewCache(size)
	f := newFixture(t, ES256, nil)
	ks, _ := NewStaticKeySet(f.key.Public())
	v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: ks, Cache: cache, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.verifier = v
	return f, cache, clk
}

func TestCacheHit(t *testing.T) {
	f, cache, _ := cachedFixture(t, 100)
	tok := f.issue(t, validClaims())
	first, err := f.verifier.Verify(bg, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got := cache.Len(); got != 1 {
		t.Fatalf("Len after first Verify: got %d, want 1", got)
	}
	first.Subject = "changed by the caller"
	second, err := f.verifier.Verify(bg, tok)
	if err != nil {
		t.Fatal(err)
	}
	if second.Subject != "user-1234" {
		t.Errorf("cached Subject: got %q, want %q", second.Subject, "user-1234")
	}
	if got := cache.Len(); got != 1 {
		t.Errorf("Len after a hit: got %d, want 1", got)
	}
	// Failed tokens are not cached.
	if _, err := f.verifier.Verify(bg, tok[:len(tok)-2]+"AA"); err == nil {
		t.Fatal("Verify of a bad token: got nil error")
	}
	if got := cache.Len(); got != 1 {
		t.Errorf("Len after a failure: got %d, want 1", got)
	}
}

// TestCacheSkipsSignature shows that a hit does not check the signature
// again: removing the key from the key set makes only uncached tokens fail.
func TestCacheSkipsSignature(t *testing.T) {
	f, _, _ := cachedFixture(t, 100)
	cached, uncached := f.issue(t, validClaims()), f.issue(t, validClaims())
	if _, err := f.verifier.Verify(bg, cached); err != nil {
		t.Fatal(err)
	}
	delete(f.verifier.static.keys, f.key.ID)
	if _, err := f.verifier.Verify(bg, cached); err != nil {
		t.Errorf("cached token: got %v, want nil", err)
	}
	if _, err := f.verifier.Verify(bg, uncached); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("uncached token: got %v, want %v", err, ErrUnknownKey)
	}
}

func TestCacheExpiry(t *testing.T) {
	f, cache, clk := cachedFixture(t, 100)
	c := validClaims()
	c.ExpiresAt = testNow.Add(time.Minute).Unix()
	tok := f.issue(t, c)
	if _, err := f.verifier.Verify(bg, tok); err != nil {
		t.Fatal(err)
	}
	// Past exp the cache no longer answers; the leeway still applies.
	clk.Add(time.Minute + 10*time.Second)
	if _, err := f.verifier.Verify(bg, tok); err != nil {
		t.Errorf("within leeway: got %v, want nil", err)
	}
	clk.Add(30 * time.Second)
	if _, err := f.verifier.Verify(bg, tok); !errors.Is(err, ErrExpired) {
		t.Errorf("after exp and leeway: got %v, want %v", err, ErrExpired)
	}
	if got := cache.Len(); got != 1 {
		t.Errorf("Len: got %d, want 1 (expired tokens are not re-added)", got)
	}
}

func TestCacheRevokeID(t *testing.T) {
	f, cache, _ := cachedFixture(t, 100)
	c := validClaims()
	c.ID = "revoked"
	a, b := f.issue(t, c), f.issue(t, c) // same jti, different signatures
	keep := f.issue(t, validClaims())
	for _, tok := range []string{a, b, keep} {
		if _, err := f.verifier.Verify(bg, tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := cache.Len(); got != 3 {
		t.Fatalf("Len: got %d, want 3", got)
	}
	cache.RevokeID("revoked")
	if got := cache.Len(); got != 1 {
		t.Errorf("Len after RevokeID: got %d, want 1", got)
	}
	cache.RevokeID("unknown")
	if got := cache.Len(); got != 1 {
		t.Errorf("Len after RevokeID of an unknown id: got %d, want 1", got)
	}
	cache.Clear()
	if got := cache.Len(); got != 0 {
		t.Errorf("Len after Clear: got %d, want 0", got)
	}
}

// TestCacheRevokeDuringVerify checks that a token whose verification
// overlapped a revocation is not cached.
func TestCacheRevokeDuringVerify(t *testing.T) {
	cache := NewCache(100)
	var sum [32]byte
	cl := &Claims{ID: "x", ExpiresAt: testNow.Add(time.Hour).Unix()}
	gen := cache.generation()
	cache.RevokeID("x")
	cache.add(&sum, cl, gen, testNow)
	if got := cache.Len(); got != 0 {
		t.Errorf("Len: got %d, want 0", got)
	}
	cache.add(&sum, cl, cache.generation(), testNow)
	if got := cache.Len(); got != 1 {
		t.Errorf("Len: got %d, want 1", got)
	}
}

func TestCacheBounded(t *testing.T) {
	const size = 64
	cache := NewCache(size)
	gen := cache.generation()
	for i := range 1000 {
		var sum [32]byte
		copy(sum[:], fmt.Sprintf("%032d", i))
		sum[0] = byte(i)
		cache.add(&sum, &Claims{ID: fmt.Sprint(i), ExpiresAt: testNow.Unix() + int64(i) + 1}, gen, testNow)
	}
	if got := cache.Len(); got > size || got < size/2 {
		t.Errorf("Len: got %d, want about %d", got, size)
	}
	// The byID index shrinks with the entries.
	ids := 0
	for i := range cache.shards {
		ids += len(cache.shards[i].byID)
	}
	if ids != cache.Len() {
		t.Errorf("jti index: got %d ids, want %d", ids, cache.Len())
	}
}

func TestCacheEvictsExpired(t *testing.T) {
	cache := NewCache(cacheShards) // one entry per shard
	gen := cache.generation()
	var a, b [32]byte
	b[1] = 1 // same shard as a
	cache.add(&a, &Claims{ID: "a", ExpiresAt: testNow.Unix() + 10}, gen, testNow)
	later := testNow.Add(time.Minute)
	cache.add(&b, &Claims{ID: "b", ExpiresAt: later.Unix() + 10}, gen, later)
	if _, ok := cache.get(&a, later); ok {
		t.Error("expired entry a: got a hit, want a miss")
	}
	if _, ok := cache.get(&b, later); !ok {
		t.Error("entry b: got a miss, want a hit")
	}
	if got := cache.Len(); got != 1 {
		t.Errorf("Len: got %d, want 1", got)
	}
}

func TestCacheConcurrent(t *testing.T) {
	f, cache, _ := cachedFixture(t, 32)
	toks := make([]string, 8)
	for i := range toks {
		c := validClaims()
		c.ID = fmt.Sprint("id-", i%3)
		toks[i] = f.issue(t, c)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				tok := toks[(i+g)%len(toks)]
				if _, err := f.verifier.Verify(bg, tok); err != nil {
					t.Error(err)
					return
				}
				if i%17 == 0 {
					cache.RevokeID(fmt.Sprint("id-", i%3))
				}
			}
		})
	}
	wg.Wait()
	if got := cache.Len(); got > len(toks) {
		t.Errorf("Len: got %d, want at most %d", got, len(toks))
	}
}
