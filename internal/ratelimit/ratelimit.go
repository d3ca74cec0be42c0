// Package ratelimit enforces request limits (API keys, OAuth clients) and
// counts failed logins, either exactly per process or, with Redis, shared
// by every replica.
//
// [Local] is an exact in-process token bucket per key. [Redis] keeps the
// same buckets in Redis (one Lua script per decision, keys under
// "gatehouse:rl:" that expire once full), so all replicas draw from one
// budget. The limiters and failure counters a [Redis] hands out never
// fail: while Redis is unreachable or slow they answer from the local
// state they wrap, count and log the fallback, and probe Redis in the
// background until it answers again. Limits are then enforced per process
// — never silently lifted, and traffic is never refused for want of Redis.
package ratelimit

import (
	"context"
	"time"
)

// Decision is a limiter's answer for one request.
type Decision struct {
	// Allowed says whether the request may proceed.
	Allowed bool
	// Remaining is how many whole requests are left in the budget after
	// this one.
	Remaining int
	// RetryAfter is, when the request is refused, how long until the next
	// one would be allowed.
	RetryAfter time.Duration
}

// Limiter decides whether a request under key may proceed, given a limit of
// limit requests per window (a token bucket of limit tokens that refills
// completely in window). Callers namespace their keys ("apikey:…",
// "client:…"). A changed limit applies from the next call; the bucket keeps
// at most the new limit. A limit or window that is not positive refuses.
type Limiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (Decision, error)
}

// FailureCounter counts failed attempts (such as logins) per key and says
// how long to wait before the next attempt is considered. After free
// failures, each further failure sets a delay that doubles from
// FailurePolicy.Base up to FailurePolicy.Max; counts are forgotten after
// FailurePolicy.Forget without failures.
type FailureCounter interface {
	// Wait returns how long the caller must wait before an attempt for
	// any of keys is considered; 0 means go ahead.
	Wait(ctx context.Context, keys ...string) (time.Duration, error)
	// Fail records a failed attempt against key, of which free are
	// allowed before delays start.
	Fail(ctx context.Context, key string, free int) error
	// Reset clears key's failures.
	Reset(ctx context.Context, key string) error
}

// FailurePolicy is the delay schedule of a FailureCounter.
type FailurePolicy struct {
	// Base is the delay after the first failure beyond the free ones; it
	// doubles with each further failure.
	Base time.Duration
	// Max caps the delay, so nobody is ever locked out for longer.
	Max time.Duration
	// Forget is how long after the last failure a count is forgotten.
	Forget time.Duration
}

// Delay is the delay after the n-th failure beyond the free ones (n ≥ 1):
// Base, 2·Base, 4·Base, … up to Max.
func (p FailurePolicy) Delay(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	if n > 30 || p.Base > p.Max>>(n-1) {
		return p.Max
	}
	return p.Base << (n - 1)
}
