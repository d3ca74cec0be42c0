package oauth

import (
	"sync"
	"time"
)

// Login throttling. Each failed sign-in counts against the account and
// against the client's IP address. After a few free failures every
// further one doubles the wait before the next attempt is considered, up
// to a cap; a success clears the account's count, and counts fade after a
// quiet period. Nobody is ever locked out for longer than the cap, so an
// attacker can slow the real user down but not shut them out, while
// online guessing drops to a few attempts per quarter of an hour per
// account and per address.
const (
	accountFreeFailures = 5
	ipFreeFailures      = 20
	maxThrottleDelay    = 15 * time.Minute
	throttleForget      = time.Hour // counts reset after this long without failures
	maxThrottleEntries  = 100000
)

// throttle counts failed logins per key ("u:"+username or "ip:"+address).
// It lives in memory: each replica throttles on its own, which multiplies
// an attacker's rate by the number of replicas at most.
type throttle struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	last     time.Time // last failure
	until    time.Time // no attempt before this
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, m: make(map[string]*throttleEntry)}
}

// wait returns how long the caller must wait before an attempt for any of
// keys is considered; 0 means go ahead.
func (t *throttle) wait(keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var d time.Duration
	for _, k := range keys {
		if e := t.m[k]; e != nil && e.until.After(now) {
			d = max(d, e.until.Sub(now))
		}
	}
	return d
}

// fail records a failed attempt against key, of which free failures are
// allowed before delays start.
func (t *throttle) fail(key string, free int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.m[key]
	if e != nil && now.Sub(e.last) > throttleForget {
		e = nil
	}
	if e == nil {
		if len(t.m) >= maxThrottleEntries {
			t.pruneLocked(now)
		}
		if len(t.m) >= maxThrottleEntries {
			return // under a flood, keep what we have rather than grow without bound
		}
		e = &throttleEntry{}
		t.m[key] = e
	}
	e.failures++
	e.last = now
	if over := e.failures - free; over > 0 {
		e.until = now.Add(backoff(over))
	}
}

// backoff is the delay after the n-th failure beyond the free ones: 1 s,
// 2 s, 4 s, ... up to maxThrottleDelay.
func backoff(n int) time.Duration {
	if n > 20 {
		return maxThrottleDelay
	}
	return min(time.Second<<(n-1), maxThrottleDelay)
}

// succeed clears key's failures.
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, key)
}

func (t *throttle) pruneLocked(now time.Time) {
	for k, e := range t.m {
		if now.Sub(e.last) > throttleForget && !e.until.After(now) {
			delete(t.m, k)
		}
	}
}
