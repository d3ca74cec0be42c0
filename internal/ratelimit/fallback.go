package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// health is whether Redis is usable. When a call fails, Redis is marked
// down (one log line) and decisions are made locally without calling it;
// at most once per interval a background ping probes it, and the first
// that succeeds marks it up again (one log line).
type health struct {
	log      *slog.Logger
	interval time.Duration
	ping     func(context.Context) error

	down      atomic.Bool
	probing   atomic.Bool
	nextProbe atomic.Int64 // Unix nanoseconds
	fallbacks atomic.Uint64

	mu sync.Mutex // orders the transitions and their log lines
}

// usable reports whether Redis should be called now. While it is down it
// counts a fallback, starts a probe when one is due and returns false.
func (h *health) usable() bool {
	if !h.down.Load() {
		return true
	}
	h.fallbacks.Add(1)
	if time.Now().UnixNano() >= h.nextProbe.Load() && h.probing.CompareAndSwap(false, true) {
		go h.probe()
	}
	return false
}

func (h *health) probe() {
	defer h.probing.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), max(h.interval, time.Second))
	defer cancel()
	if err := h.ping(ctx); err != nil {
		h.nextProbe.Store(time.Now().Add(h.interval).UnixNano())
		return
	}
	h.up()
}

// callFailed records a call that failed with err: the decision falls
// back, and unless the caller gave up (ctx is done: not Redis's fault),
// Redis is marked down.
func (h *health) callFailed(ctx context.Context, err error) {
	h.fallbacks.Add(1)
	if ctx.Err() == nil {
		h.failed(err)
	}
}

// failed marks Redis down if it was up, with one log line.
func (h *health) failed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextProbe.Store(time.Now().Add(h.interval).UnixNano())
	if h.down.CompareAndSwap(false, true) {
		h.log.Warn("rate limits: Redis is unreachable; limits are enforced per process until it answers again", "err", err)
	}
}

// up marks Redis usable.
func (h *health) up() {
	if !h.down.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down.CompareAndSwap(true, false) {
		h.log.Info("rate limits: Redis answers again; limits are shared across replicas")
	}
}

// fallbackLimiter asks Redis and, when it fails or is down, local.
type fallbackLimiter struct {
	redis Limiter
	local Limiter
	h     *health
}

// Allow implements [Limiter]. It returns an error only if the local
// limiter does.
func (f *fallbackLimiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (Decision, error) {
	if limit <= 0 || window < time.Millisecond {
		// Not a limit Redis can keep (a caller's mistake, not Redis's
		// failure): the local limiter refuses it.
		return f.local.Allow(ctx, key, limit, window)
	}
	if f.h.usable() {
		d, err := f.redis.Allow(ctx, key, limit, window)
		if err == nil {
			return d, nil
		}
		f.h.callFailed(ctx, err)
	}
	return f.local.Allow(ctx, key, limit, window)
}

// fallbackFailures is the FailureCounter counterpart of fallbackLimiter.
type fallbackFailures struct {
	redis FailureCounter
	local FailureCounter
	h     *health
}

func (f *fallbackFailures) use(ctx context.Context, call func(FailureCounter) error) error {
	if f.h.usable() {
		err := call(f.redis)
		if err == nil {
			return nil
		}
		f.h.callFailed(ctx, err)
	}
	return call(f.local)
}

// Wait implements [FailureCounter].
func (f *fallbackFailures) Wait(ctx context.Context, keys ...string) (time.Duration, error) {
	var d time.Duration
	err := f.use(ctx, func(c FailureCounter) error {
		var err error
		d, err = c.Wait(ctx, keys...)
		return err
	})
	return d, err
}

// Fail implements [FailureCounter].
func (f *fallbackFailures) Fail(ctx context.Context, key string, free int) error {
	return f.use(ctx, func(c FailureCounter) error { return c.Fail(ctx, key, free) })
}

// Reset implements [FailureCounter].
func (f *fallbackFailures) Reset(ctx context.Context, key string) error {
	return f.use(ctx, func(c FailureCounter) error { return c.Reset(ctx, key) })
}
