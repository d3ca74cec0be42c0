package ratelimit

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLocalExact(t *testing.T) {
	type step struct {
		advance   time.Duration
		limit     int // 0: the case's limit
		allowed   bool
		remaining int
		retry     time.Duration // when refused
	}
	cases := []struct {
		name   string
		limit  int
		window time.Duration
		steps  []step
	}{
		{"N allowed then refused", 3, time.Minute, []step{
			{allowed: true, remaining: 2},
			{allowed: true, remaining: 1},
			{allowed: true, remaining: 0},
			{allowed: false, retry: 20 * time.Second},
			{advance: 10 * time.Second, allowed: false, retry: 10 * time.Second},
		}},
		{"one token back per window/limit", 3, time.Minute, []step{
			{allowed: true, remaining: 2}, {allowed: true, remaining: 1}, {allowed: true, remaining: 0},
			{advance: 20 * time.Second, allowed: true, remaining: 0},
			{allowed: false, retry: 20 * time.Second},
		}},
		{"full again after the window, never more", 2, time.Second, []step{
			{allowed: true, remaining: 1}, {allowed: true, remaining: 0}, {allowed: false, retry: 500 * time.Millisecond},
			{advance: time.Hour, allowed: true, remaining: 1}, {allowed: true, remaining: 0}, {allowed: false, retry: 500 * time.Millisecond},
		}},
		{"lowered limit caps the bucket", 10, 10 * time.Second, []step{
			{allowed: true, remaining: 9},
			{limit: 2, allowed: true, remaining: 1},
			{limit: 2, allowed: true, remaining: 0},
			{limit: 2, allowed: false, retry: 5 * time.Second},
		}},
		{"limit of one", 1, time.Hour, []step{
			{allowed: true, remaining: 0},
			{allowed: false, retry: time.Hour},
			{advance: time.Hour, allowed: true, remaining: 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_000_000, 0)}
			l := NewLocal(clock.now)
			for i, s := range tc.steps {
				clock.advance(s.advance)
				limit := tc.limit
				if s.limit != 0 {
					limit = s.limit
				}
				d, err := l.Allow(context.Background(), "k", limit, tc.window)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed != s.allowed || d.Remaining != s.remaining {
					t.Fatalf("step %d: %+v, want allowed=%v remaining=%d", i, d, s.allowed, s.remaining)
				}
				if !s.allowed && (d.RetryAfter < s.retry-time.Millisecond || d.RetryAfter > s.retry+time.Millisecond) {
					t.Fatalf("step %d: retry after %v, want %v", i, d.RetryAfter, s.retry)
				}
			}
		})
	}
}

func TestLocalKeysIndependentAndCounted(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := NewLocal(clock.now)
	ctx := context.Background()
	for range 2 {
		if d, _ := l.Allow(ctx, "a", 2, time.Minute); !d.Allowed {
			t.Fatal("a refused within its limit")
		}
	}
	if d, _ := l.Allow(ctx, "a", 2, time.Minute); d.Allowed {
		t.Fatal("a allowed over its limit")
	}
	if d, _ := l.Allow(ctx, "b", 2, time.Minute); !d.Allowed {
		t.Fatal("b refused: keys share a bucket")
	}
	if a, r := l.Decisions(); a != 3 || r != 1 {
		t.Errorf("Decisions = %d allowed, %d limited; want 3, 1", a, r)
	}
}

func TestLocalPrunesIdleBuckets(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := NewLocal(clock.now)
	ctx := context.Background()
	for i := range 100 {
		l.Allow(ctx, "short"+strconv.Itoa(i), 5, time.Second)
	}
	l.Allow(ctx, "long", 1, time.Hour) // refused until the hour is over
	if n := l.Len(); n != 101 {
		t.Fatalf("Len = %d, want 101", n)
	}
	clock.advance(2 * time.Minute) // past the sweep interval and the short windows
	l.Allow(ctx, "new", 5, time.Second)
	if n := l.Len(); n != 2 {
		t.Fatalf("Len after the sweep = %d, want 2 (the long bucket and the new one)", n)
	}
	// The long bucket was not idle for its window: it is still empty.
	if d, _ := l.Allow(ctx, "long", 1, time.Hour); d.Allowed {
		t.Error("a bucket within its window was dropped: the limit was reset")
	}
}

func TestLocalBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := NewLocal(clock.now)
	l.max = 50
	for i := range 500 {
		l.Allow(context.Background(), "k"+strconv.Itoa(i), 5, time.Hour)
		if n := l.Len(); n > l.max {
			t.Fatalf("Len = %d after %d keys, want at most %d", n, i+1, l.max)
		}
	}
}

func TestFailurePolicyDelay(t *testing.T) {
	p := FailurePolicy{Base: time.Second, Max: 15 * time.Minute, Forget: time.Hour}
	cases := []struct {
		n    int
		want time.Duration
	}{
		{0, 0}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{10, 512 * time.Second}, {11, 15 * time.Minute}, {40, 15 * time.Minute}, {1000, 15 * time.Minute},
	}
	for _, tc := range cases {
		if got := p.Delay(tc.n); got != tc.want {
			t.Errorf("Delay(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
	huge := FailurePolicy{Base: 1000 * time.Hour, Max: 2000 * time.Hour}
	if got := huge.Delay(29); got != huge.Max {
		t.Errorf("Delay with a large base = %v, want the cap (no overflow)", got)
	}
}
