package keyauth

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit/ratelimittest"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// TestRateLimitSharedAcrossReplicas runs two Services (two replicas) on one
// store: with a Redis limiter a key's budget is shared by both, without it
// each process has its own.
func TestRateLimitSharedAcrossReplicas(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *store.Store) {
		prefix := ratelimittest.Prefix(t)
		replica := func(shared bool) *Service {
			h, err := apikey.NewHasher(testPepper)
			if err != nil {
				t.Fatal(err)
			}
			var limiter ratelimit.Limiter
			if shared {
				r := ratelimittest.Open(t, ratelimit.RedisOptions{Prefix: prefix, Timeout: 10 * time.Second})
				limiter = r.Limiter(ratelimit.NewLocal(nil))
			}
			svc, err := New(Config{Store: st, Hasher: h, Logger: slog.New(slog.DiscardHandler), Limiter: limiter})
			if err != nil {
				t.Fatal(err)
			}
			return svc
		}
		ctx := context.Background()
		a, b := replica(true), replica(true)
		_, key, err := a.Create(ctx, Params{Name: "shared", RateLimit: 4, RateWindow: time.Hour}, Actor{Name: "test"})
		if err != nil {
			t.Fatal(err)
		}
		allowed := 0
		for i := range 10 {
			svc := a
			if i%2 == 1 {
				svc = b
			}
			r, err := svc.Check(ctx, key.Plaintext(), netip.Addr{})
			if err != nil {
				t.Fatal(err)
			}
			switch r.Reason {
			case "":
				allowed++
			case apikey.ReasonRateLimited:
				if r.RetryAfter <= 0 {
					t.Errorf("refusal without a retry time: %+v", r)
				}
			default:
				t.Fatalf("unexpected refusal %q", r.Reason)
			}
		}
		if allowed != 4 {
			t.Errorf("two replicas with Redis allowed %d uses of a 4-per-hour key, want 4", allowed)
		}
		// Without Redis every process counts on its own.
		c := replica(false)
		if r, err := c.Check(ctx, key.Plaintext(), netip.Addr{}); err != nil || r.Reason != "" {
			t.Errorf("a replica without Redis: %q, %v; want accepted (its own budget)", r.Reason, err)
		}
	})
}
