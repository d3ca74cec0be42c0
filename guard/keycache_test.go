package guard

import (
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

func TestKeyCache(t *testing.T) {
	const id = "AAAAAAAAAAA1"
	key := makeKey(id, "k")
	tests := []struct {
		name string
		// result is what Gatehouse answers; it may change after the first
		// request (then).
		result KeyResult
		then   *KeyResult
		// steps: advance the clock, then send the key; want the status
		// and the number of verifier calls so far.
		steps []step
	}{
		{
			name:   "accepted key cached for the TTL",
			result: activeKey(id),
			steps: []step{
				{0, 200, 1}, {10 * time.Second, 200, 1}, {19 * time.Second, 200, 1},
				{time.Second, 200, 2}, {29 * time.Second, 200, 2}, {time.Second, 200, 3},
			},
		},
		{
			name:   "never cached past the key's expiry",
			result: expiring(activeKey(id), newClock().Now().Add(10*time.Second)),
			steps:  []step{{0, 200, 1}, {9 * time.Second, 200, 1}, {time.Second, 401, 2}},
		},
		{
			name:   "expired key refused",
			result: expiring(activeKey(id), newClock().Now()),
			steps:  []step{{0, 401, 1}},
		},
		{
			name:   "refusal cached for the miss TTL",
			result: KeyResult{},
			then:   ptr(activeKey(id)),
			steps:  []step{{0, 401, 1}, {4 * time.Second, 401, 1}, {time.Second, 200, 2}},
		},
		{
			name:   "rate-limited keys are not cached",
			result: limited(activeKey(id)),
			steps:  []step{{0, 200, 1}, {0, 200, 2}, {0, 200, 3}},
		},
		{
			name:   "over the rate limit: 429 until retry_after",
			result: KeyResult{RetryAfter: 3 * time.Second},
			then:   ptr(activeKey(id)),
			steps:  []step{{0, 429, 1}, {2 * time.Second, 429, 1}, {time.Second, 200, 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			h := e.guard.Require(Policy{Kinds: []token.Kind{token.KindAPIKey}})(echo)
			e.keys.set(key, tt.result)
			for i, s := range tt.steps {
				e.clock.Add(s.advance)
				rec := do(h, "/r", "X-API-Key", key)
				if rec.Code != s.status {
					t.Fatalf("step %d: status: got %d, want %d", i, rec.Code, s.status)
				}
				if got := e.keys.callCount(); got != s.calls {
					t.Fatalf("step %d: verifier calls: got %d, want %d", i, got, s.calls)
				}
				if i == 0 && tt.then != nil {
					e.keys.set(key, *tt.then)
				}
			}
		})
	}
}

type step struct {
	advance time.Duration
	status  int
	calls   int
}

func ptr[T any](v T) *T { return &v }

func expiring(r KeyResult, at time.Time) KeyResult {
	r.Principal.ExpiresAt = at
	return r
}

func limited(r KeyResult) KeyResult {
	r.Limited = true
	return r
}

func TestRetryAfterHeader(t *testing.T) {
	e := newEnv(t, nil)
	h := e.guard.Require(Policy{})(echo)
	key := makeKey("AAAAAAAAAAA1", "k")
	e.keys.set(key, KeyResult{RetryAfter: 2500 * time.Millisecond})
	rec := do(h, "/r", "X-API-Key", key)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status: got %d, want 429", rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After: got %q, want 3", got)
	}
}

func TestRevoke(t *testing.T) {
	t.Run("API key", func(t *testing.T) {
		e := newEnv(t, nil)
		h := e.guard.Require(Policy{})(echo)
		const id = "AAAAAAAAAAA1"
		key := makeKey(id, "k")
		e.keys.set(key, activeKey(id))
		if rec := do(h, "/r", "X-API-Key", key); rec.Code != 200 {
			t.Fatalf("before revocation: got %d, want 200", rec.Code)
		}
		e.guard.Revoke(token.KindAPIKey, id)
		if got := e.guard.hits.len(); got != 0 {
			t.Errorf("cached entries after Revoke: got %d, want 0", got)
		}
		// Gatehouse (a stale replica) still says active: refused anyway,
		// without asking.
		if rec := do(h, "/r", "X-API-Key", key); rec.Code != 401 {
			t.Errorf("after revocation: got %d, want 401", rec.Code)
		}
		if got := e.keys.callCount(); got != 1 {
			t.Errorf("verifier calls: got %d, want 1", got)
		}
		// Other keys are untouched.
		other := makeKey("AAAAAAAAAAA2", "o")
		e.keys.set(other, activeKey("AAAAAAAAAAA2"))
		if rec := do(h, "/r", "X-API-Key", other); rec.Code != 200 {
			t.Errorf("other key: got %d, want 200", rec.Code)
		}
		// The revocation is forgotten after RevocationTTL.
		e.clock.Add(DefaultRevocationTTL)
		if rec := do(h, "/r", "X-API-Key", key); rec.Code != 200 {
			t.Errorf("after RevocationTTL: got %d, want 200", rec.Code)
		}
	})
	t.Run("API key revoked during verification", func(t *testing.T) {
		e := newEnv(t, nil)
		h := e.guard.Require(Policy{})(echo)
		const id = "AAAAAAAAAAA1"
		key := makeKey(id, "k")
		e.keys.set(key, activeKey(id))
		e.keys.block = make(chan struct{})
		done := make(chan int)
		go func() { done <- do(h, "/r", "X-API-Key", key).Code }()
		for e.keys.callCount() == 0 {
			time.Sleep(time.Millisecond)
		}
		e.guard.Revoke(token.KindAPIKey, id)
		close(e.keys.block)
		if got := <-done; got != 401 {
			t.Errorf("request in flight: got %d, want 401", got)
		}
		if got := e.guard.hits.len(); got != 0 {
			t.Errorf("cached entries: got %d, want 0 (the stale answer must not be cached)", got)
		}
	})
	t.Run("JWT", func(t *testing.T) {
		e := newEnv(t, nil)
		h := e.guard.Require(Policy{})(echo)
		c := e.issuer.claims("read")
		c.ID = "jti-1"
		tok := e.issuer.issue(t, c)
		if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != 200 {
			t.Fatalf("before revocation: got %d, want 200", rec.Code)
		}
		e.guard.Revoke(token.KindJWT, "jti-1")
		if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != 401 {
			t.Errorf("after revocation: got %d, want 401", rec.Code)
		}
		other := e.issuer.issue(t, e.issuer.claims("read"))
		if rec := do(h, "/r", "Authorization", "Bearer "+other); rec.Code != 200 {
			t.Errorf("other token: got %d, want 200", rec.Code)
		}
	})
	t.Run("Flush", func(t *testing.T) {
		e := newEnv(t, nil)
		h := e.guard.Require(Policy{})(echo)
		key := makeKey("AAAAAAAAAAA1", "k")
		e.keys.set(key, activeKey("AAAAAAAAAAA1"))
		do(h, "/r", "X-API-Key", key)
		e.guard.Flush()
		do(h, "/r", "X-API-Key", key)
		if got := e.keys.callCount(); got != 2 {
			t.Errorf("verifier calls: got %d, want 2", got)
		}
	})
}

func TestCacheKeyedByAddress(t *testing.T) {
	e := newEnv(t, nil)
	h := e.guard.Require(Policy{})(echo)
	key := makeKey("AAAAAAAAAAA1", "k")
	e.keys.set(key, activeKey("AAAAAAAAAAA1"))
	for i, addr := range []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.2:1", "[2001:db8::1]:1"} {
		req, _ := http.NewRequest("GET", "/r", nil)
		req.RemoteAddr = addr
		req.Header.Set("X-API-Key", key)
		h.ServeHTTP(discard{}, req)
		want := []int{1, 1, 2, 3}[i]
		if got := e.keys.callCount(); got != want {
			t.Errorf("after %s: verifier calls: got %d, want %d", addr, got, want)
		}
	}
	if hashKey(key, netip.Addr{}) == hashKey(key, netip.MustParseAddr("::")) {
		t.Errorf("hashKey: unknown address and :: collide")
	}
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

func TestCacheBounded(t *testing.T) {
	now := time.Unix(0, 0)
	c := newKeyCache(10)
	for i := range 100 {
		c.put(hashKey(strconv.Itoa(i), netip.Addr{}), &keyEntry{until: now.Add(time.Minute)}, now)
		if got := c.len(); got > 10 {
			t.Fatalf("after %d puts: len %d, want at most 10", i+1, got)
		}
	}
	// The newest entry survives.
	if _, ok := c.get(hashKey("99", netip.Addr{}), now); !ok {
		t.Errorf("newest entry evicted")
	}
}

func TestSingleFlight(t *testing.T) {
	e := newEnv(t, nil)
	h := e.guard.Require(Policy{})(echo)
	key := makeKey("AAAAAAAAAAA1", "k")
	e.keys.set(key, activeKey("AAAAAAAAAAA1"))
	e.keys.block = make(chan struct{})
	const n = 20
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() { codes <- do(h, "/r", "X-API-Key", key).Code })
	}
	for e.keys.callCount() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others join the flight
	close(e.keys.block)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("status: got %d, want 200", c)
		}
	}
	if got := e.keys.callCount(); got != 1 {
		t.Errorf("verifier calls: got %d, want 1", got)
	}
}

func TestTokenCacheExpiry(t *testing.T) {
	e := newEnv(t, nil)
	h := e.guard.Require(Policy{})(echo)
	c := e.issuer.claims("read")
	c.ExpiresAt = e.clock.Now().Add(time.Minute).Unix()
	tok := e.issuer.issue(t, c)
	if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != 200 {
		t.Fatalf("fresh token: got %d, want 200", rec.Code)
	}
	if got := e.guard.tokens.len(); got != 1 {
		t.Errorf("cached tokens: got %d, want 1", got)
	}
	e.clock.Add(time.Minute + token.DefaultLeeway)
	if rec := do(h, "/r", "Authorization", "Bearer "+tok); rec.Code != 401 {
		t.Errorf("expired token: got %d, want 401", rec.Code)
	}
}
