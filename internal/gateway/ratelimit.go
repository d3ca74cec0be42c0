package gateway

import (
	"sync"
	"time"
)

// maxBuckets bounds the token buckets of one route.
const maxBuckets = 100000

// limiter is an in-process token bucket per credential: n requests per
// window, refilled continuously, bursting up to n. It is safe for
// concurrent use.
type limiter struct {
	n      float64
	window time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(n int, window time.Duration) *limiter {
	return &limiter{n: float64(n), window: window, buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket. If none is left it returns
// false and how long until one is.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	rate := l.n / l.window.Seconds() // tokens per second
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.n, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.n, b.tokens+el*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// prune drops buckets that have refilled (they equal a new one), then
// arbitrary ones if still full. l.mu is held.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.window {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < maxBuckets {
			break
		}
		delete(l.buckets, k)
	}
}
