package oauth

import (
	"context"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
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
// By default it lives in memory: each replica throttles on its own, which
// multiplies an attacker's rate by the number of replicas at most. With
// Config.SharedLimits the counts live in Redis and all replicas throttle
// together; while Redis is unreachable the in-memory counts take over.
type throttle struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*throttleEntry

	// shared, when set, keeps the counts (see initRateLimits); its
	// fallback is this throttle's own map, through localThrottle.
	shared ratelimit.FailureCounter
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
	if t.shared != nil {
		if d, err := t.shared.Wait(context.Background(), keys...); err == nil {
			return d
		}
	}
	return t.waitLocal(keys...)
}

func (t *throttle) waitLocal(keys ...string) time.Duration {
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
	if t.shared != nil && t.shared.Fail(context.Background(), key, free) == nil {
		return
	}
	t.failLocal(key, free)
}

func (t *throttle) failLocal(key string, free int) {
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
		e.until = now.Add(loginFailurePolicy.Delay(over))
	}
}

// succeed clears key's failures.
func (t *throttle) succeed(key string) {
	if t.shared != nil && t.shared.Reset(context.Background(), key) == nil {
		return
	}
	t.succeedLocal(key)
}

func (t *throttle) succeedLocal(key string) {
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

// localThrottle is a throttle's in-memory counting as a
// ratelimit.FailureCounter: the fallback of the shared counter.
type localThrottle struct{ t *throttle }

func (l localThrottle) Wait(_ context.Context, keys ...string) (time.Duration, error) {
	return l.t.waitLocal(keys...), nil
}

func (l localThrottle) Fail(_ context.Context, key string, free int) error {
	l.t.failLocal(key, free)
	return nil
}

func (l localThrottle) Reset(_ context.Context, key string) error {
	l.t.succeedLocal(key)
	return nil
}
