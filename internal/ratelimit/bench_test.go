package ratelimit_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit/ratelimittest"
)

// BenchmarkLocalAllowParallel is the per-process decision under
// concurrency, over 100 keys.
func BenchmarkLocalAllowParallel(b *testing.B) {
	l := ratelimit.NewLocal(nil)
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = "client:" + strconv.Itoa(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(ctx, keys[i%len(keys)], 1<<30, time.Hour)
			i++
		}
	})
}

// BenchmarkRedisAllowParallel is the shared decision (one script call per
// decision) against the test Redis.
func BenchmarkRedisAllowParallel(b *testing.B) {
	r := ratelimittest.Open(b, ratelimit.RedisOptions{Timeout: 10 * time.Second})
	l := r.Limiter(ratelimit.NewLocal(nil))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := l.Allow(ctx, "client:bench", 1<<30, time.Hour); err != nil || !d.Allowed {
				b.Fatal(d, err)
			}
		}
	})
	if r.Fallbacks() != 0 {
		b.Fatalf("%d decisions fell back", r.Fallbacks())
	}
}
