package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of a Local limiter's memory.
const (
	// DefaultMaxBuckets is the number of buckets a Local limiter keeps at
	// most. Keys are API-key families and client IDs, so it is a safety
	// net, not a working limit.
	DefaultMaxBuckets = 1 << 20
	// sweepEvery is how often idle buckets are dropped.
	sweepEvery = time.Minute
)

// Local is an exact in-process token-bucket limiter. A bucket that has been
// idle for its whole window is full again, which is the same as having no
// bucket, so such buckets are dropped once a minute; memory stays bounded
// by the keys active within their windows (and by DefaultMaxBuckets: past
// it, arbitrary buckets are dropped, which can only reset them to full).
// It is safe for concurrent use.
type Local struct {
	now func() time.Time
	max int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time

	allowed, limited atomic.Uint64
}

type bucket struct {
	tokens float64
	last   time.Time
	limit  int
	window time.Duration
}

// NewLocal returns a Local limiter on the clock now (nil: time.Now).
func NewLocal(now func() time.Time) *Local {
	if now == nil {
		now = time.Now
	}
	return &Local{now: now, max: DefaultMaxBuckets, buckets: make(map[string]*bucket)}
}

// Allow implements [Limiter]. It never returns an error.
func (l *Local) Allow(_ context.Context, key string, limit int, window time.Duration) (Decision, error) {
	d := l.take(key, limit, window)
	if d.Allowed {
		l.allowed.Add(1)
	} else {
		l.limited.Add(1)
	}
	return d, nil
}

// Decisions returns how many requests this limiter allowed and refused.
func (l *Local) Decisions() (allowed, limited uint64) {
	return l.allowed.Load(), l.limited.Load()
}

// Len returns the number of buckets held.
func (l *Local) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *Local) take(key string, limit int, window time.Duration) Decision {
	if limit <= 0 || window <= 0 {
		return Decision{Allowed: false, RetryAfter: time.Second}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery || len(l.buckets) >= l.max {
		l.sweepLocked(now)
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(limit), last: now, limit: limit, window: window}
		l.buckets[key] = b
	}
	if b.limit != limit || b.window != window { // the limit was changed
		b.tokens = min(b.tokens, float64(limit))
		b.limit, b.window = limit, window
	}
	rate := float64(limit) / window.Seconds() // tokens per second
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(float64(limit), b.tokens+el*rate)
		b.last = now
	}
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / rate * float64(time.Second))
		return Decision{RetryAfter: max(wait, time.Millisecond)}
	}
	b.tokens--
	return Decision{Allowed: true, Remaining: int(b.tokens)}
}

// sweepLocked drops the buckets that have refilled completely and, if
// still at the bound, arbitrary others until there is room.
func (l *Local) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if now.Sub(b.last) >= b.window {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max {
			break
		}
		delete(l.buckets, k)
	}
}
