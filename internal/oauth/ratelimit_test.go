package oauth

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit/ratelimittest"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

var ccForm = url.Values{"grant_type": {"client_credentials"}}

func TestClientRateLimit(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newM2MEnv(t, open, nil)
		limited, secret := e.newClient(t, store.Client{Scopes: []string{"read"}, RateLimit: 3, RateWindow: time.Hour})
		free, freeSecret := e.newClient(t, store.Client{Scopes: []string{"read"}})
		for i := range 3 {
			if status, _, body := e.post(t, TokenPath, ccForm, limited.ID, secret); status != http.StatusOK {
				t.Fatalf("grant %d within the limit: %d %s", i+1, status, body)
			}
		}
		status, hdr, body := e.post(t, TokenPath, ccForm, limited.ID, secret)
		if status != http.StatusTooManyRequests || errorCode(t, body) != errRateLimited {
			t.Fatalf("grant over the limit: %d %s; want 429 rate_limited", status, body)
		}
		if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1190 || ra > 1200 {
			t.Errorf("Retry-After %q, want about 1200 s (one token per 20 min)", hdr.Get("Retry-After"))
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", hdr.Get("Cache-Control"))
		}
		// A wrong secret is refused as such, not counted as a grant.
		if status, _, body := e.post(t, TokenPath, ccForm, limited.ID, "wrong"); status != http.StatusUnauthorized {
			t.Errorf("wrong secret over the limit: %d %s, want 401", status, body)
		}
		for range 10 {
			if status, _, body := e.post(t, TokenPath, ccForm, free.ID, freeSecret); status != http.StatusOK {
				t.Fatalf("a client without a limit was refused: %d %s", status, body)
			}
		}
		e.clock.Advance(20 * time.Minute)
		if status, _, body := e.post(t, TokenPath, ccForm, limited.ID, secret); status != http.StatusOK {
			t.Errorf("grant after a token came back: %d %s", status, body)
		}
		if status, _, _ := e.post(t, TokenPath, ccForm, limited.ID, secret); status != http.StatusTooManyRequests {
			t.Errorf("second grant after one token came back: %d, want 429", status)
		}
	})
}

// replicas starts two providers on one store that share Redis under one
// key prefix, like two replicas of a deployment.
func replicas(t *testing.T, open func(testing.TB) *store.Store) (*m2mEnv, *m2mEnv) {
	t.Helper()
	return replicasWithPrefix(t, open, ratelimittest.Prefix(t))
}

func replicasWithPrefix(t *testing.T, open func(testing.TB) *store.Store, prefix string) (*m2mEnv, *m2mEnv) {
	t.Helper()
	shared := func(c *Config) {
		r := ratelimittest.Open(t, ratelimit.RedisOptions{Prefix: prefix, Timeout: 10 * time.Second})
		c.RateLimiter = r.Limiter(ratelimit.NewLocal(c.Now))
		c.SharedLimits = r
	}
	a := newM2MEnv(t, open, shared)
	b := newM2MEnv(t, func(testing.TB) *store.Store { return a.st }, shared)
	return a, b
}

func TestClientRateLimitSharedByReplicas(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		a, b := replicas(t, open)
		c, secret := a.newClient(t, store.Client{Scopes: []string{"read"}, RateLimit: 5, RateWindow: time.Hour})
		ok, limited := 0, 0
		for i := range 12 {
			e := a
			if i%2 == 1 {
				e = b
			}
			switch status, hdr, body := e.post(t, TokenPath, ccForm, c.ID, secret); status {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				limited++
				if hdr.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
			default:
				t.Fatalf("grant %d: %d %s", i+1, status, body)
			}
		}
		if ok != 5 || limited != 7 {
			t.Errorf("two replicas: %d grants, %d refused; want 5 and 7 (one shared budget)", ok, limited)
		}
	})
}

func TestLoginThrottleSharedByReplicas(t *testing.T) {
	prefix := ratelimittest.Prefix(t)
	a, b := replicasWithPrefix(t, nil, prefix)
	fa := newFlowEnvOn(t, a)
	fb := &flowEnv{m2mEnv: b, user: fa.user, client: fa.client}
	ba, bb := fa.browser(t), fb.browser(t)
	pa, pb := ba.get(LoginPath), bb.get(LoginPath)
	for i := range accountFreeFailures {
		if got := ba.login(pa, "ada", "guess"); got.status != http.StatusUnauthorized {
			t.Fatalf("wrong password #%d on replica A: %d, want 401", i+1, got.status)
		}
	}
	if got := bb.login(pb, "ada", "guess"); got.status != http.StatusUnauthorized {
		t.Fatalf("wrong password on replica B: %d, want 401", got.status)
	}
	opts, err := redis.ParseURL(ratelimittest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(opts)
	defer raw.Close()
	if n, err := raw.Get(context.Background(), prefix+"fail:u:ada").Int(); err != nil || n != accountFreeFailures+1 {
		t.Fatalf("shared failure count = %d, %v; want %d (failures on both replicas)", n, err, accountFreeFailures+1)
	}
	// Four more failures on A (five beyond the free ones: a 16 s delay)
	// hold on B.
	for range 4 {
		a.p.flow.throttle.fail("u:ada", accountFreeFailures)
	}
	got := bb.login(pb, "ada", testPassword)
	ra, _ := strconv.Atoi(got.header.Get("Retry-After"))
	if got.status != http.StatusTooManyRequests || ra < 10 {
		t.Fatalf("right password on replica B after failures on A: %d, Retry-After %q; want 429, about 16 s", got.status, got.header.Get("Retry-After"))
	}
	if !strings.Contains(got.body, "Too many failed attempts") {
		t.Errorf("429 page does not say why: %s", got.body)
	}
	if a.p.flow.throttle.wait("u:ada") <= 0 {
		t.Error("replica A does not see the delay")
	}
}

// newFlowEnvOn adds newFlowEnv's user and client to e.
func newFlowEnvOn(t *testing.T, e *m2mEnv) *flowEnv {
	t.Helper()
	fe := newFlowEnv(t, func(testing.TB) *store.Store { return e.st }, nil)
	fe.m2mEnv = e // serve from e (with its shared limits), on the same store
	return fe
}
